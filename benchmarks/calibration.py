"""Calibration cost: time per layer of the light pipeline against depth, and against simulation.

For He et al.'s CIFAR ResNets of depth 20, 32 and 56 (same width) it prints the light pipeline's
seconds per IF layer, which must stay flat as depth grows (one sweep, no re-simulation), and for the
first model the ratio calibration time / time of one T-step simulation of the same images.
The record in docs/benchmarks.md (docs/data/calibration.json), sized to run in a few minutes on
one thread:

    python benchmarks/calibration.py --models resnet20_he resnet32_he resnet56_he --images 128 \
        --T 32 --threads 1 --out docs/data/calibration.json
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace

import tables
import torch
from record import provenance, write_json

import snncal
import snncal.ann.models

WARMUP_IMAGES = 16


def images_for(n: int, data: str | None) -> torch.Tensor:
    """``n`` CIFAR-10 training images from an ImageFolder copy, or uniform noise of that shape."""
    if data is None:
        return torch.rand(n, 3, 32, 32)
    from snncal.ann.data import build_dataset
    from snncal.core.convert import calibration_images

    return calibration_images(build_dataset("cifar10", data, "train", augment="none"), n, seed=0)


def measure(name: str, x: torch.Tensor, T: int, method: str) -> dict:
    """Staged verbs, timed: the ANN thresholds (observe) and the whole calibration (its sweep runs
    the threshold rule again, so ``calibrate_s`` is the method's full cost), then one simulation.
    A calibration of :data:`WARMUP_IMAGES` images on a copy runs first, so that compiling the
    neuron passes is not timed."""
    torch.manual_seed(0)
    model = snncal.ann.models.create(name, num_classes=10).eval()
    cfg = snncal.ConvertConfig(T=T, method=method, num_images=len(x))
    snn = snncal.to_spiking(snncal.prepare(model, x[: cfg.batch_size], cfg), cfg)
    # compiles the neuron passes once, outside the timing, on a copy and a few images
    snncal.calibrate(copy.deepcopy(snn), x[:WARMUP_IMAGES], replace(cfg, num_images=WARMUP_IMAGES))
    t0 = time.perf_counter()
    snncal.observe(snn, x, cfg)
    t_thresholds = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = snncal.calibrate(snn, x, cfg)
    t_calib = time.perf_counter() - t0
    snn.simulate(x[: cfg.batch_size])  # compiles the IF blocks once, outside the timing
    t0 = time.perf_counter()
    for b in x.split(cfg.batch_size):
        snn.simulate(b)
    t_sim = time.perf_counter() - t0
    layers = len(snn.neurons())
    return {
        "model": name, "images": len(x), "T": T, "method": method, "layers": layers,
        "thresholds_s": t_thresholds, "calibrate_s": t_calib,
        "per_layer_s": t_calib / layers, "simulate_s": t_sim, "ratio": t_calib / t_sim,
        "node_runs": report.node_runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet20_he", "resnet32_he", "resnet56_he"])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--method", default="light")
    p.add_argument("--data", default=None, help="CIFAR-10 ImageFolder root (default: noise)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", help="write the rows here (JSON; docs/data/calibration.json is the record)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x = images_for(args.images, args.data)
    print(f"{args.method} pipeline, {args.images} images, T={args.T}, {args.threads} threads")
    record = {"provenance": provenance(args.threads), "rows": []}
    for name in args.models:
        record["rows"].append(measure(name, x, args.T, args.method))
        print(tables.calibration({"rows": record["rows"][-1:]}).splitlines()[-1], flush=True)
    print(tables.calibration(record))
    if args.out:
        write_json(args.out, record)


if __name__ == "__main__":
    main()
