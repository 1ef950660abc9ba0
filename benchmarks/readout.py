"""Whether a delayed readout pays at low T (issue 28): the SNN's output averaged over its last
``T - d`` steps only, the first ``d`` steps spent as a warm-up that still counts toward ``T``
(the delayed readout of LTB, the pre-simulation steps of SRP and COS, without their retraining).

One conversion per method and T (calibrated for a readout over all ``T`` steps), one simulation of
the test subset, and for each delay ``d``: top-1 accuracy, agreement with the ANN and the logit
MSE of ``snncal.evaluate`` (the mean over images of the squared distance to the ANN's logits).
The record of docs/results.md, section 6:

    python benchmarks/readout.py --ckpt runs/resnet20_he/last --data data/cifar10 \\
        --methods light advanced+ --T 4 8 --delays 0 1 2 --threads 1 \\
        --out docs/data/readout_delay_resnet20_he.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from record import provenance, write_json

import snncal
from snncal.ann.checkpoint import load_checkpoint
from snncal.ann.data import build_dataset
from snncal.core.subsets import evenly_spaced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True, help="CIFAR-10 ImageFolder root")
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--T", nargs="+", type=int, required=True)
    p.add_argument("--delays", nargs="+", type=int, required=True, help="warm-up steps d < T")
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--num-images", type=int, default=1024, help="calibration images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    if min(args.T) < 1:
        p.error(f"each T must be at least 1, got {min(args.T)}")
    if min(args.delays) < 0 or max(args.delays) >= min(args.T):
        p.error(f"each delay must be in 0 .. T - 1 = {min(args.T) - 1}")
    torch.set_num_threads(args.threads)
    try:
        write_json(args.out, {"provenance": provenance(args.threads), "rows": rows(args)})
    except (ValueError, OSError) as err:  # a bad checkpoint, data folder or setting: one line
        p.error(str(err))


@torch.no_grad()
def rows(args: argparse.Namespace) -> list[dict]:
    """One row per method, T and delay."""
    model, _ = load_checkpoint(args.ckpt)
    train = build_dataset("cifar10", args.data, "train", augment="none")
    test = evenly_spaced(build_dataset("cifar10", args.data, "test"), args.test_images)
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([test[i][1] for i in range(len(test))])
    logits = model(x)
    ann = logits.argmax(1)
    ann_acc = float((ann == y).float().mean() * 100)
    out = []
    for method in args.methods:
        for T in args.T:
            t0 = time.perf_counter()
            snn = snncal.convert(model, train, T=T, method=method, seed=args.seed,
                                 num_images=args.num_images)
            seconds = time.perf_counter() - t0
            # running averages after 1 .. T steps; the readout of steps d+1 .. T is their difference
            avg = torch.cat([snn.simulate(b, T, every_step=True) for b in x.split(100)], 1)
            for d in args.delays:
                read = (T * avg[T - 1] - d * avg[d - 1]) / (T - d) if d else avg[T - 1]
                out.append({"model": Path(args.ckpt).parent.name, "method": method, "T": T, "delay": d,
                            "acc": float((read.argmax(1) == y).float().mean() * 100), "ann_acc": ann_acc,
                            "agreement": float((read.argmax(1) == ann).float().mean() * 100),
                            "logit_mse": float(((read - logits) ** 2).sum(1).mean()), "seconds": seconds})
                print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    main()
