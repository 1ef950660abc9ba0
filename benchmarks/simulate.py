"""Simulation cost: time(SNN, T) / (T x time(ANN forward)), and peak memory against T.

Both timings come from the same process and the same input, so the ratio holds on a busy machine.
Peak memory is how much one simulation raises the peak resident set of a fresh subprocess
that only loads the converted network (conversion itself runs in the parent).
Example (the record in docs/benchmarks.md):

    python benchmarks/simulate.py --models vgg16_bn resnet20 resnet20_he --batch 64 --T 32 \
        --memory-T 32 256 2048 --memory-models resnet20_he vgg16_bn:0.25
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time

import torch

import snncal
import snncal.ann.models


def build(spec: str, batch: int, T: int) -> tuple[torch.nn.Module, snncal.SpikingNetwork, torch.Tensor]:
    """``name`` or ``name:width`` -> (ANN in eval mode, its SNN with max thresholds, an input batch)."""
    name, _, width = spec.partition(":")
    torch.manual_seed(0)
    model = snncal.ann.models.create(name, num_classes=10, width=float(width or 1)).eval()
    x = torch.rand(batch, 3, 32, 32)
    snn = snncal.convert(model, x, T=T, threshold="max", num_images=batch)
    return model, snn, x


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.no_grad()
def speed(spec: str, batch: int, T: int, repeats: int) -> dict:
    """Median over ``repeats`` of time(SNN, T steps) / time(T ANN forwards): the same work timed the
    same way, back to back, so that load from other jobs hits both alike."""
    model, snn, x = build(spec, batch, T)
    model(x), snn.simulate(x, T=T)  # warm-up (and, for the SNN, compiling its neuron kernel)
    runs = []
    for _ in range(repeats):
        ann = _time(lambda: [model(x) for _ in range(T)]) / T
        sim = _time(lambda: snn.simulate(x, T=T))
        runs.append((sim / (T * ann), ann, sim))
    ratio, ann, sim = sorted(runs)[len(runs) // 2]
    return {"model": spec, "T": T, "ann_s": ann, "snn_s": sim, "ratio": ratio}


@torch.no_grad()
def profile(spec: str, batch: int, T: int, rows: int = 12) -> None:
    """Where the time goes: the torch profiler's costliest operators, SNN (T steps) then ANN (T passes)."""
    model, snn, x = build(spec, batch, T)
    model(x), snn.simulate(x, T=T)  # warm-up and compiling
    for name, fn in (("SNN", lambda: snn.simulate(x, T=T)), ("ANN", lambda: [model(x) for _ in range(T)])):
        with torch.profiler.profile(record_shapes=True) as prof:
            fn()
        events = prof.key_averages(group_by_input_shape=True)
        total = sum(e.self_cpu_time_total for e in events) / 1e3
        print(f"\n{spec} {name}: {total:.0f} ms of operators")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]:
            ms = e.self_cpu_time_total / 1e3
            print(f"  {ms:8.1f} ms {e.count:5d}x {e.key[:40]:40s} {e.input_shapes[:1]}")


def _peak_rss(path: str, batch: int, T: int, threads: int, queue: mp.Queue) -> None:
    """In a fresh process: load a saved SNN, then the peak RSS growth of one simulation."""
    torch.set_num_threads(threads)
    snn = torch.load(path, weights_only=False)
    x = torch.rand(batch, 3, 32, 32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        snn.simulate(x, T=T)
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)


def peak_memory_mb(spec: str, batch: int, T: int) -> float:
    """Peak resident memory (MB) that simulating ``T`` steps adds, measured in a subprocess."""
    _, snn, _ = build(spec, batch, T)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snn.pt")
        torch.save(snn, path)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_rss, args=(path, batch, T, torch.get_num_threads(), queue))
        proc.start()
        proc.join()
        return queue.get()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["vgg16_bn", "resnet20", "resnet20_he"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-T", type=int, nargs="*", default=[32, 256, 2048])
    p.add_argument("--memory-models", nargs="*", default=["resnet20_he"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--profile", action="store_true", help="also print the costliest operators")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}")
    print("| model | T | ANN forward (s) | SNN simulate (s) | SNN / (T x ANN) |")
    print("|---|---|---|---|---|")
    for spec in args.models:
        r = speed(spec, args.batch, args.T, args.repeats)
        print(f"| {spec} | {r['T']} | {r['ann_s']:.4f} | {r['snn_s']:.3f} | {r['ratio']:.2f} |", flush=True)
    if args.profile:
        for spec in args.models:
            profile(spec, args.batch, args.T)
    if args.memory_T:
        print("\n| model | " + " | ".join(f"peak MB, T={T}" for T in args.memory_T) + " |")
        print("|---|" + "---|" * len(args.memory_T))
        for spec in args.memory_models:
            mems = [peak_memory_mb(spec, args.batch, T) for T in args.memory_T]
            print(f"| {spec} | " + " | ".join(f"{m:.0f}" for m in mems) + " |", flush=True)


if __name__ == "__main__":
    main()
