"""How closely one calibrated SNN follows its ANN, and where each layer's error comes from.

Converts a CIFAR-10 checkpoint with any ``ConvertConfig`` setting (``--set key=value``) and prints,
from the product's evaluation layer (``snncal.evaluate`` and ``snncal.core.evaluate.layer_errors``):

- on a fixed test subset: top-1 accuracy, top-1 agreement with the ANN, and the mean squared
  difference of the SNN's logits from the ANN's. Accuracy on a few thousand images moves by about
  a point with float rounding alone, the logit error by well under 1 %, so the logit error is the
  measure to compare calibration settings with;
- with ``--layers``, for every IF neuron on the first 256 images of that subset, the error of its
  rate against the ANN (as converted, before calibration changes its weights), split into the
  *input* and the *temporal* error (``LayerError``).

Example (docs/results.md):

    python benchmarks/fidelity.py --ckpt runs/resnet20_he_cifar10/best --data data/cifar10 \\
        --T 16 --method advanced --set weight_lr=1e-3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import snncal
from snncal.ann.checkpoint import load_checkpoint
from snncal.ann.data import build_dataset
from snncal.core.evaluate import layer_errors
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True, help="CIFAR-10 ImageFolder root")
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--method", default="advanced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ConvertConfig fields, e.g. weight_lr=1e-3 convert_avgpool=false")
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--layers", action="store_true", help="also split each layer's error")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
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
    if args.layers:
        images = torch.stack([test[i][0] for i in range(256)])
        reference = snncal.convert(model, train, cfg, method="none")
        print("| layer | total | input | temporal | mean square of the ANN output |")
        print("|---|---|---|---|---|")
        for e in layer_errors(snn, images, reference):
            print(f"| {e.name} | {e.total:.3g} | {e.input:.3g} | {e.temporal:.3g} | {e.target:.3g} |")


if __name__ == "__main__":
    main()
