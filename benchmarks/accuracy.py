"""Accuracy of none / light / advanced calibration on a trained CIFAR-10 checkpoint, over seeds.

Each (T, method, seed) calibrates a fresh SNN for that T on ``--images`` clean training images drawn
with the seed, and evaluates it on a fixed test subset (every ``--test-every``-th test image, so all
classes are in it; ``--test-every 1`` for all of them). Rows are appended to ``--out`` as they
finish (an interrupted run resumes), and a Markdown table of mean +- std is printed. Example (the
record in docs/results.md):

    python benchmarks/accuracy.py --ckpt runs/resnet20_he_cifar10/best --data data/cifar10 \
        --T 16 32 --seeds 0 1 2 3 4 --test-every 5 --out docs/data/accuracy_resnet20_he.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

import snncal
from snncal.ann.checkpoint import load_checkpoint
from snncal.ann.data import build_dataset
from snncal.core.files import atomic_write_json


def summary(rows: list[dict], ann: float) -> str:
    """Markdown: one row per method, one column per T, mean +- std (n) and the gap to the ANN."""
    Ts = sorted({r["T"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        "| method | " + " | ".join(f"T={T}" for T in Ts) + " |",
        "|---|" + "---|" * len(Ts),
        f"| ANN | {ann:.2f} |" + " |" * (len(Ts) - 1),
    ]
    for m in methods:
        cells = []
        for T in Ts:
            accs = [r["acc"] for r in rows if r["method"] == m and r["T"] == T]
            if not accs:
                cells.append("")
                continue
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            mean = statistics.mean(accs)
            cells.append(f"{mean:.2f} ± {sd:.2f} (n={len(accs)}, gap {ann - mean:.2f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True, help="CIFAR-10 ImageFolder root")
    p.add_argument("--T", type=int, nargs="+", default=[32])
    p.add_argument("--methods", nargs="+", default=["none", "light", "advanced"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--test-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--per-layer", action="store_true", help="one threshold per layer (the paper)")
    p.add_argument("--keep-avgpool", action="store_true",
                   help="average pools stay linear ops on spike trains (no 'Convert AP')")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    per_channel, convert_avgpool = not args.per_layer, not args.keep_avgpool
    model, meta = load_checkpoint(args.ckpt)
    train = build_dataset("cifar10", args.data, "train", augment="none")
    test = build_dataset("cifar10", args.data, "test")
    test = Subset(test, range(0, len(test), args.test_every))
    loader = DataLoader(test, batch_size=100)
    out = Path(args.out)
    state = json.loads(out.read_text()) if out.exists() else {"rows": []}
    for key, value in (("per_channel", per_channel), ("convert_avgpool", convert_avgpool)):
        if out.exists() and state.get(key, True) != value:  # files older than a setting used True
            p.error(f"{out} holds results with {key}={state.get(key, True)}; use another --out")
    if "ann" not in state:
        state.update(ann=snncal.evaluate(model, loader)["ann"], checkpoint=meta["arch"],
                     test_images=len(test), test_every=args.test_every, calib_images=args.images,
                     per_channel=per_channel, convert_avgpool=convert_avgpool)
        atomic_write_json(out, state)
    done = {(r["T"], r["method"], r["seed"]) for r in state["rows"]}
    print(f"{meta['arch']}: ANN {state['ann']:.2f}% on {len(test)} test images", flush=True)
    for T in args.T:
        for method in args.methods:
            for seed in args.seeds:
                if (T, method, seed) in done:
                    continue
                t0 = time.perf_counter()
                snn = snncal.convert(model, train, T=T, method=method, seed=seed,
                                     num_images=args.images, per_channel=per_channel,
                                     convert_avgpool=convert_avgpool)
                t_cal = time.perf_counter() - t0
                t0 = time.perf_counter()
                acc = snncal.evaluate(snn, loader, T=[T])[T]
                state["rows"].append({"T": T, "method": method, "seed": seed, "acc": acc,
                                      "calibration_s": t_cal,
                                      "evaluation_s": time.perf_counter() - t0})
                atomic_write_json(out, state)
                print(f"T={T} {method} seed={seed}: {acc:.2f}% (calibration {t_cal:.0f} s)", flush=True)
    print(summary(state["rows"], state["ann"]))


if __name__ == "__main__":
    main()
