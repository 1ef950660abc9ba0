"""What mixed precision (``amp``) does to a calibrated SNN: accuracy, agreement with the ANN and
logit error on the fixed test subset, and the time, with ``amp`` off and on, in the same run.

    python benchmarks/amp.py runs/cost/resnet20_he_cifar10_light_T32/snn --checkpoint \
        runs/resnet20_he_cifar10/best --data data/cifar10 --T 32 --test-images 2000 --amp bfloat16
"""

from __future__ import annotations

import argparse
import time

import torch

import snncal
from snncal.ann.checkpoint import load_checkpoint
from snncal.ann.data import build_dataset
from snncal.core.subsets import evenly_spaced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snn", help="an SNN saved by `snncal convert`")
    p.add_argument("--checkpoint", required=True, help="the ANN it was converted from")
    p.add_argument("--data", required=True, help="CIFAR-10 ImageFolder root")
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--amp", default="bfloat16", choices=["bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    if args.T < 1 or args.test_images < 1 or args.threads < 1:
        p.error("--T, --test-images and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    test = evenly_spaced(build_dataset("cifar10", args.data, "test"), args.test_images)
    try:
        snn = snncal.load(args.snn)
    except (OSError, ValueError) as err:
        p.error(str(err))
    print("| amp | accuracy (%) | agreement with the ANN (%) | logit MSE | seconds |\n|---|---|---|---|---|")
    for amp in ("off", args.amp):
        snn.amp = amp
        snncal.evaluate(snn, evenly_spaced(test, 2), T=[args.T])  # compile before timing
        t0 = time.perf_counter()
        r = snncal.evaluate(snn, test, T=[args.T], ann=model.eval())
        seconds = time.perf_counter() - t0
        print(f"| {amp} | {r.snn[args.T]:.2f} | {r.agreement[args.T]:.2f} | {r.logit_mse[args.T]:.4f} "
              f"| {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
