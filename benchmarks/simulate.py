"""Simulation cost: time(SNN, T) / (T x time(ANN forward)), and peak memory against T.

Both timings come from the same process and the same input, so the ratio holds on a busy machine.
Peak memory is measured in a fresh subprocess per model and T that only loads the converted network
(conversion runs in the parent) and simulates once to compile: what one simulation adds to its
resident memory (the high-water mark reset after that warm-up), and the peak bytes of CPU tensors
it holds (every allocation of torch's CPU allocator, from the profiler's memory events).
The record in docs/benchmarks.md (docs/data/simulate.json), sized to run in a few minutes on one
thread:

    python benchmarks/simulate.py --models vgg16_bn resnet20 resnet20_he --batch 16 --T 32 \
        --repeats 5 --memory-T 32 256 1024 --memory-models resnet20_he vgg16_bn:0.25 --threads 1 \
        --out docs/data/simulate.json
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import tables
import torch
from record import provenance, write_json

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
    return {"model": spec, "batch": batch, "T": T, "ann_s": ann, "snn_s": sim, "ratio": ratio,
            "ratios": [r[0] for r in runs]}


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


def tensor_peak_bytes(fn) -> tuple[int, object]:
    """Peak bytes of CPU tensors that ``fn()`` holds at once above those live when it starts, and
    its result. Every allocation and free of torch's CPU allocator (eager ops and the compiled
    blocks' buffers alike) is an event of the profiler; their running sum in time order peaks here."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        if e.device_type() == DeviceType.CPU:
            live += e.nbytes()
            peak = max(peak, live)
    return peak, out


def _status_kb(key: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process, in kB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _memory_in_fresh_process(path: str, batch: int, T: int, threads: int, queue: mp.Queue) -> None:
    """In a fresh process: load a saved SNN, simulate once at T = 8 (compiling its IF blocks), then
    measure one simulation at ``T`` twice: the growth of resident memory above its level after the
    warm-up (the kernel's high-water mark is reset there, ``/proc/self/clear_refs``), and the peak
    bytes of CPU tensors it holds (:func:`tensor_peak_bytes`)."""
    torch.set_num_threads(threads)
    snn = torch.load(path, weights_only=False)
    x = torch.rand(batch, 3, 32, 32)
    with torch.no_grad():
        snn.simulate(x, T=8)
        gc.collect()
        base = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS
        snn.simulate(x, T=T)
        rss = (_status_kb("VmHWM") - base) / 1024
        tensors, _ = tensor_peak_bytes(lambda: snn.simulate(x, T=T))
    queue.put({"rss_mb": rss, "tensor_mb": tensors / 2**20})


def peak_memory(spec: str, batch: int, T: int) -> dict:
    """What one simulation of ``T`` steps adds to a process that holds the converted network: peak
    resident MB and peak tensor MB (see :func:`_memory_in_fresh_process`), in a fresh subprocess."""
    _, snn, _ = build(spec, batch, T)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snn.pt")
        torch.save(snn, path)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_in_fresh_process,
                           args=(path, batch, T, torch.get_num_threads(), queue))
        proc.start()
        result = queue.get()
        proc.join()
    return {"model": spec, "batch": batch, "T": T, **result}


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
    p.add_argument("--out", help="write the rows here (JSON; docs/data/simulate.json is the record)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    record = {"provenance": provenance(args.threads), "speed": [], "memory": []}
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}")
    for spec in args.models:
        record["speed"].append(speed(spec, args.batch, args.T, args.repeats))
    if args.profile:
        for spec in args.models:
            profile(spec, args.batch, args.T)
    for spec in args.memory_models:
        record["memory"] += [peak_memory(spec, args.batch, T) for T in args.memory_T]
    if record["speed"]:
        print(tables.speed(record))
    if record["memory"]:
        print(tables.memory(record))
    if args.out:
        write_json(args.out, record)


if __name__ == "__main__":
    main()
