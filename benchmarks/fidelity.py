"""How closely one calibrated SNN follows its ANN, and where each layer's error comes from.

Converts a CIFAR-10 checkpoint with any ``ConvertConfig`` setting (``--set key=value``) and prints,
from the product's evaluation layer (``snncal.evaluate`` and ``snncal.core.evaluate.layer_errors``):

- on a fixed test subset: top-1 accuracy, top-1 agreement with the ANN, and the mean squared
  difference of the SNN's logits from the ANN's. Accuracy on a few thousand images moves by about
  a point with float rounding alone, the logit error by well under 1 %, so the logit error is the
  measure to compare calibration settings with;
- with ``--layers``, for every IF neuron on the first 256 images of that subset, the error of its
  rate against the ANN (as converted, before calibration changes its weights), split into the
  *input* and the *temporal* error (``LayerError``), and its mean threshold (to compare the
  threshold rules of two methods layer by layer).

Example (docs/results.md):

    python benchmarks/fidelity.py --ckpt runs/resnet20_he_cifar10/best --data data/cifar10 \\
        --T 16 --method advanced --set weight_lr=1e-3 --threads 1

With ``--model`` instead of a checkpoint, a zoo model with random weights (BatchNorm statistics
randomised) on uniform random images: no data set, no training. Each ``--methods`` x ``--Ts``
row compares the SNN's logits with the ANN's and with the ideal ClipFloor network's (the
converted graph with each neuron replaced by ``clip_floor`` of its input at the neuron's threshold
and initial potential: what the SNN computes if every neuron received a constant current), as a
relative mean squared error and a top-1 agreement; with ``--layers``, each neuron's error split,
tagged depthwise / pointwise / other by the convolution that feeds it. The record of
docs/results.md (docs/data/fidelity_depthwise.json), a few minutes on one thread:

    python benchmarks/fidelity.py --model tv_mobilenet_v2 tv_mnasnet0_5 tv_regnet_x_400mf \\
        --methods none light --Ts 32 256 --layers --threads 1 --out docs/data/fidelity_depthwise.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from record import provenance, write_json
from torch import Tensor, fx, nn

import snncal
from snncal.ann.checkpoint import load_checkpoint
from snncal.ann.data import build_dataset
from snncal.ann.models import randomize_bn
from snncal.core.evaluate import layer_errors
from snncal.core.neuron import IFNeuron, clip_floor
from snncal.core.subsets import describe_subset, evenly_spaced


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


class _ClipFloorView(fx.Interpreter):
    """Runs a spiking graph as its ideal ClipFloor network: each neuron as ``clip_floor`` of its
    input, the rate it fires for a constant current over ``T`` steps."""

    def __init__(self, gm: fx.GraphModule, T: int) -> None:
        super().__init__(gm)
        self.T = T

    def call_module(self, target: str, args: tuple, kwargs: dict):
        mod = self.submodules[target]
        if isinstance(mod, IFNeuron):
            return clip_floor(args[0], mod.threshold, self.T, mod.v0)
        return super().call_module(target, args, kwargs)


def _compare(out: Tensor, ref: Tensor) -> tuple[float, float]:
    """Relative mean squared error and top-1 agreement (%) of ``out`` against ``ref``."""
    rel = float(((out - ref) ** 2).mean() / (ref**2).mean().clamp_min(1e-12))
    return rel, float((out.argmax(1) == ref.argmax(1)).float().mean() * 100)


def layer_kinds(snn: snncal.SpikingNetwork) -> dict[str, str]:
    """Each neuron's kind by the convolution that feeds it: depthwise (groups = channels > 1),
    pointwise (1x1), other (a full convolution, a linear layer, a pool's convolution, a sum)."""
    gm, kinds = snn.graph, {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), IFNeuron):
            src = node.args[0]
            conv = gm.get_submodule(src.target) if getattr(src, "op", None) == "call_module" else None
            kind = "other"
            if isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.groups == conv.in_channels:
                kind = "depthwise"
            elif isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.groups == 1:
                kind = "pointwise"
            kinds[node.target] = kind
    return kinds


@torch.no_grad()
def zoo_rows(args: argparse.Namespace) -> list[dict]:
    """``--model``: rows of random-weight zoo models against their ANN and ClipFloor network."""
    import snncal.ann.models as zoo

    rows = []
    for name in args.model:
        torch.manual_seed(args.seed)
        model = randomize_bn(zoo.create(name, num_classes=10))
        calib = torch.rand(args.calib_images, 3, args.size, args.size)
        images = torch.rand(args.test_images, 3, args.size, args.size)
        ann = model(images)
        for method in args.methods:
            for T in args.Ts:
                cfg = snncal.ConvertConfig(T=T, method=method, seed=args.seed, **parse_set(args.set))
                t0 = time.perf_counter()
                snn = snncal.convert(model, calib, cfg)
                out = snn.simulate(images, T)
                floor = _ClipFloorView(snn.graph, T).run(images)
                (mse_ann, agree_ann), (mse_cf, agree_cf) = _compare(out, ann), _compare(out, floor)
                row = {"model": name, "method": method, "T": T, "input": f"{args.size}x{args.size}",
                       "images": args.test_images, "ann_rel_mse": mse_ann, "ann_agreement": agree_ann,
                       "clipfloor_rel_mse": mse_cf, "clipfloor_agreement": agree_cf,
                       "clipfloor_vs_ann_rel_mse": _compare(floor, ann)[0],
                       "seconds": time.perf_counter() - t0}
                if args.layers:
                    kinds, reference = layer_kinds(snn), snncal.convert(model, calib, cfg, method="none")
                    row["layers"] = [{**asdict(e), "kind": kinds[e.name]}
                                     for e in layer_errors(snn, images, reference)]
                print({k: v for k, v in row.items() if k != "layers"}, flush=True)
                rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt")
    p.add_argument("--data", help="CIFAR-10 ImageFolder root")
    p.add_argument("--model", nargs="+", help="zoo models with random weights instead of --ckpt")
    p.add_argument("--methods", nargs="+", default=["none", "light"], help="with --model")
    p.add_argument("--Ts", nargs="+", type=int, default=[32, 256], help="with --model")
    p.add_argument("--size", type=int, default=64, help="with --model: input height and width")
    p.add_argument("--calib-images", type=int, default=32, help="with --model")
    p.add_argument("--out", help="write the rows here (JSON); with --ckpt, added to the file's rows")
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--method", default="advanced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ConvertConfig fields, e.g. weight_lr=1e-3 convert_avgpool=false")
    p.add_argument("--test-images", type=int, default=2000, help="(--model: default 16)")
    p.add_argument("--layers", action="store_true", help="also split each layer's error")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        if args.test_images == 2000:
            args.test_images = 16
        record = {"provenance": provenance(args.threads), "rows": zoo_rows(args)}
        if args.out:
            write_json(args.out, record)
        return
    if not (args.ckpt and args.data):
        p.error("give --ckpt and --data, or --model")
    model, _ = load_checkpoint(args.ckpt)
    train = build_dataset("cifar10", args.data, "train", augment="none")
    full = build_dataset("cifar10", args.data, "test")
    test = evenly_spaced(full, args.test_images)
    cfg = snncal.ConvertConfig(T=args.T, method=args.method, seed=args.seed, **parse_set(args.set))
    t0 = time.perf_counter()
    snn = snncal.convert(model, train, cfg)
    seconds = time.perf_counter() - t0
    r = snncal.evaluate(snn, test, T=[args.T], ann=model, batch_size=100)
    print(f"T={args.T} {args.method} {parse_set(args.set) or ''} on {describe_subset(len(test), len(full))}: "
          f"acc {r.snn[args.T]:.2f} %, agreement with the ANN {r.agreement[args.T]:.2f} %, "
          f"logit MSE {r.logit_mse[args.T]:.3f} (calibration {seconds:.0f} s)", flush=True)
    row = {"model": Path(args.ckpt).parent.name, "arch": model_arch(args.ckpt), "method": args.method,
           "T": args.T, "set": parse_set(args.set), "images": len(test), "acc": r.snn[args.T],
           "ann_acc": r.ann, "agreement": r.agreement[args.T], "logit_mse": r.logit_mse[args.T],
           "seconds": seconds}
    if args.layers:
        images = torch.stack([test[i][0] for i in range(256)])
        reference = snncal.convert(model, train, cfg, method="none")
        kinds, neurons = layer_kinds(snn), snn.neurons()
        row["layers"] = [{**asdict(e), "kind": kinds[e.name],
                          "threshold": float(neurons[e.name].threshold.mean())}
                         for e in layer_errors(snn, images, reference)]
        print("| layer | kind | total | input | temporal | excess | ANN output's mean square | mean Vth |")
        print("|---|---|---|---|---|---|---|---|")
        for e in row["layers"]:
            print(f"| {e['name']} | {e['kind']} | {e['total']:.3g} | {e['input']:.3g} | "
                  f"{e['temporal']:.3g} | {e['excess']:.3g} | {e['target']:.3g} | {e['threshold']:.3g} |")
    if args.out:  # rows of other checkpoints / methods / T already in the file are kept
        old = json.loads(Path(args.out).read_text())["rows"] if Path(args.out).exists() else []
        key = ("model", "method", "T", "set")
        kept = [o for o in old if tuple(map(o.get, key)) != tuple(map(row.get, key))]
        write_json(args.out, {"provenance": provenance(args.threads), "rows": [*kept, row]})


def model_arch(ckpt: str) -> str:
    """The zoo architecture a checkpoint names."""
    return json.loads(Path(ckpt).with_suffix(".json").read_text())["arch"]


if __name__ == "__main__":
    main()
