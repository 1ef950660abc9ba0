"""How closely one calibrated SNN follows its ANN, and where each layer's error comes from.

Prints, for one conversion of a CIFAR-10 checkpoint (any ``ConvertConfig`` field via ``--set``):

- on a fixed test subset: top-1 accuracy, top-1 agreement with the ANN, and the mean squared
  difference of the SNN's logits from the ANN's. Accuracy on a few thousand images moves by about
  a point with float rounding alone (the same network in other batch sizes), the logit error by
  well under 1 %, so the logit error is the measure to compare calibration settings with;
- with ``--layers``, for every IF neuron on the first 256 images of that subset, the mean squared
  error of its rate (times ``Vth``) against the ANN's ReLU output (the ANN as converted, before
  calibration changes its weights), next to two of its parts: the *input* error (``ReLU`` of the
  SNN's mean input current against the ANN: what the layers before it, and this layer's own
  calibrated weights, leave) and the *temporal* error (the rate against ``ClipFloor`` of the mean
  current: what a constant current with the same mean would not have done).

Example (docs/results.md):

    python benchmarks/fidelity.py --ckpt runs/resnet20_he_cifar10/best --data data/cifar10 \
        --T 16 --method advanced --set weight_lr=1e-3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import DataLoader, Subset

import snncal
from snncal.ann.checkpoint import load_checkpoint
from snncal.ann.data import build_dataset
from snncal.core.calibrate.sweep import Sweep
from snncal.core.neuron import clip_floor


def parse_set(items: list[str]) -> dict:
    """``["weight_lr=1e-3", "convert_avgpool=false"]`` -> ``{"weight_lr": 0.001, ...}``."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@torch.no_grad()
def fidelity(model: torch.nn.Module, snn: snncal.SpikingNetwork, loader: DataLoader) -> dict:
    """Top-1 accuracy, top-1 agreement with ``model`` (both %), mean squared logit difference."""
    correct = agree = n = 0
    sq = 0.0
    for x, y in loader:
        a, s = model(x), snn(x)
        correct += int((s.argmax(1) == y).sum())
        agree += int((s.argmax(1) == a.argmax(1)).sum())
        sq += float(((s - a) ** 2).sum())
        n += len(y)
    return {"acc": 100 * correct / n, "agree": 100 * agree / n, "logit_mse": sq / n}


@torch.no_grad()
def ann_outputs(ann: snncal.SpikingNetwork, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every neuron's ReLU output in ``ann`` (an uncalibrated conversion run as an ANN), by name."""
    sweep, out = Sweep(ann.graph, images, ann.T), {}
    for seg in sweep.segments:
        neuron = ann.graph.get_submodule(seg.neuron.target)
        out[seg.neuron.target] = sweep.ann[seg.neuron] = neuron.relu(sweep.ann_input(seg))
    sweep.close()
    return out


@torch.no_grad()
def layer_errors(
    snn: snncal.SpikingNetwork, images: torch.Tensor, targets: dict[str, torch.Tensor]
) -> list[dict]:
    """Per IF neuron: mean squared error of its rate on ``images`` against the ANN's output
    ``targets[name]``, and its two parts."""
    sweep = Sweep(snn.graph, images, snn.T)
    rows = []
    try:
        for seg in sweep.segments:
            neuron = snn.graph.get_submodule(seg.neuron.target)
            target = targets[seg.neuron.target]
            current = sweep.run_segment(seg, sweep.rates(seg), set())[0]
            sweep.simulate_layer(seg, target, store=True)
            if seg.neuron in sweep.spikes:  # a neuron no later neuron reads is not stored
                rate = sweep.rate(seg.neuron)
                cf = clip_floor(current, neuron.threshold, snn.T, neuron.v0)
                rows.append({
                    "layer": seg.neuron.target,
                    "total": float(((rate - target) ** 2).mean()),
                    "input": float(((current.relu() - target) ** 2).mean()),
                    "temporal": float(((rate - cf) ** 2).mean()),
                    "target_ms": float((target**2).mean()),
                })
            sweep.done_with(seg)
    finally:
        sweep.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True, help="CIFAR-10 ImageFolder root")
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--method", default="advanced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ConvertConfig fields, e.g. weight_lr=1e-3 convert_avgpool=false")
    p.add_argument("--test-every", type=int, default=5)
    p.add_argument("--layers", action="store_true", help="also split each layer's error")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.ckpt)
    model.eval()
    train = build_dataset("cifar10", args.data, "train", augment="none")
    test = build_dataset("cifar10", args.data, "test")
    test = Subset(test, range(0, len(test), args.test_every))
    overrides = parse_set(args.set)
    t0 = time.perf_counter()
    snn = snncal.convert(model, train, T=args.T, method=args.method, seed=args.seed, **overrides)
    seconds = time.perf_counter() - t0
    r = fidelity(model, snn, DataLoader(test, batch_size=100))
    print(f"T={args.T} {args.method} {overrides or ''} on {len(test)} test images: "
          f"acc {r['acc']:.2f} %, agreement with the ANN {r['agree']:.2f} %, "
          f"logit MSE {r['logit_mse']:.3f} (calibration {seconds:.0f} s)", flush=True)
    if args.layers:
        images = torch.stack([test[i][0] for i in range(256)])
        ann = snncal.convert(model, train, T=args.T, method="none", seed=args.seed, **overrides)
        targets = ann_outputs(ann, images)
        print("| layer | total | input | temporal | mean square of the ANN output |")
        print("|---|---|---|---|---|")
        for row in layer_errors(snn, images, targets):
            print(f"| {row['layer']} | {row['total']:.3g} | {row['input']:.3g} | "
                  f"{row['temporal']:.3g} | {row['target_ms']:.3g} |")


if __name__ == "__main__":
    main()
