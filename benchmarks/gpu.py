"""GPU benchmark: simulation cost, throughput, peak memory and the light pipeline, in one run.

For VGG-16 and ResNet-34 of the zoo at 224 x 224 (1,000 classes) and the conversion papers'
ResNet-20 on CIFAR shapes (32 x 32, 10 classes), all with random weights, batch 64:

* ``SNN / (T x ANN)``: time of one T = 32 simulation over the time of 32 ANN forward passes (BN not
  folded, as users run it), timed back to back on the same input, median of ``--repeats``;
* images per second of that simulation;
* peak GPU memory (``torch.cuda.max_memory_allocated``) of one simulation at T = 32 and T = 256;

and for ResNet-34 the time of ``snncal.convert(..., method="light")`` on 1,024 random images at
T = 32 over the time of one plain simulation of those images (issue #17: within 2x).

Every timing is bracketed by ``torch.cuda.synchronize`` and follows a warm-up run that compiles
the IF blocks. Results print as Markdown tables and go to ``--out`` as JSON, rewritten atomically
after every row (``"complete": false`` until the end), so a run cut short still leaves its rows.
``--tiny`` runs the same code paths on tiny widths and inputs in well under a minute on one CPU
thread (memory then reads "n/a"). Run it through ``benchmarks/gpu.sh``:

    bash benchmarks/gpu.sh --out $OUT/gpu.json            # the GPU record, under 5 minutes
    bash benchmarks/gpu.sh --tiny --device cpu --out /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

import snncal
import snncal.ann.models
from snncal.core.device import auto_max_batch
from snncal.core.files import atomic_write_json

# steps x images on CUDA: batch 64 x 32 steps in one chunk, at T = 32 and at T = 256 alike. 4096
# would fold 64 steps at T = 256, and VGG-16's 224 x 224 layers would then hold ~50 GB per tensor.
CUDA_MAX_BATCH = 2048


@dataclass(frozen=True)
class Net:
    """A zoo model as benchmarked: name, square input size, classes and width multiplier."""

    name: str
    size: int
    num_classes: int
    width: float = 1.0


@dataclass(frozen=True)
class Plan:
    """What one run measures; ``FULL`` on the GPU, ``TINY`` to exercise every path on a CPU."""

    nets: tuple[Net, ...]
    batch: int
    T: int
    memory_at: tuple[int, ...]
    light_net: Net
    light_images: int


FULL = Plan(
    nets=(Net("vgg16_bn", 224, 1000), Net("resnet34", 224, 1000), Net("resnet20", 32, 10)),
    batch=64, T=32, memory_at=(32, 256), light_net=Net("resnet34", 224, 1000), light_images=1024,
)
TINY = Plan(
    nets=(
        Net("vgg16_bn", 32, 1000, 0.125), Net("resnet34", 64, 1000, 0.125), Net("resnet20", 32, 10, 0.125),
    ),
    batch=4, T=4, memory_at=(4, 8), light_net=Net("resnet34", 64, 1000, 0.125), light_images=16,
)
BUDGET_S = 300  # the GPU run must finish in 5 minutes
WARM_IMAGES = 128  # the light pipeline's warm-up conversion: one calibration batch (batch_size 128)


# -- timing and memory ------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a clock read covers it; nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """``(seconds, fn())``, with the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    value = fn()
    sync(device)
    return time.perf_counter() - t0, value


def peak_memory_mb(snn: snncal.SpikingNetwork, x: torch.Tensor, T: int) -> float | None:
    """Peak GPU memory (MiB) allocated during one ``T``-step simulation of ``x``; ``None`` off CUDA.

    Absolute, as ``torch.cuda.max_memory_allocated`` reports it: the weights and the input that are
    resident already count (see ``resident_mb``)."""
    if x.device.type != "cuda":
        return None
    sync(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    snn.simulate(x, T=T)
    sync(x.device)
    return torch.cuda.max_memory_allocated(x.device) / 2**20


def resident_mb(device: torch.device) -> float | None:
    """GPU memory (MiB) allocated now; ``None`` off CUDA."""
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None


def free_memory(device: torch.device) -> None:
    """Hand cached blocks back, so that one model's leftovers do not crowd the next."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


# -- measurements -----------------------------------------------------------------------------------
def build(net: Net, n: int, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor]:
    """The zoo model with random weights (seed 0) in eval mode on ``device``, and ``n`` random images."""
    torch.manual_seed(0)
    model = snncal.ann.models.create(net.name, num_classes=net.num_classes, width=net.width)
    x = torch.rand(n, 3, net.size, net.size)
    return model.eval().to(device), x.to(device)


@torch.no_grad()
def speed(net: Net, plan: Plan, max_batch: int, repeats: int, device: torch.device) -> dict:
    """Simulation against ANN time, throughput and peak memory of one model (max thresholds)."""
    model, x = build(net, plan.batch, device)
    snn = snncal.convert(model, x, T=plan.T, threshold="max", num_images=plan.batch, max_batch=max_batch)
    T = plan.T
    model(x), snn.simulate(x, T=T)  # warm-up, and compiling the IF blocks
    runs = []
    for _ in range(repeats):
        ann, _ = timed(lambda: [model(x) for _ in range(T)], device)
        sim, _ = timed(lambda: snn.simulate(x, T=T), device)
        runs.append((sim / ann, ann, sim))
    ratio, ann, sim = sorted(runs)[len(runs) // 2]
    return {
        **asdict(net), "batch": plan.batch, "T": T, "if_layers": len(snn.neurons()),
        "ann_s": ann, "snn_s": sim, "ratio": ratio, "images_per_s": plan.batch / sim,
        "repeats": [{"ann_s": a, "snn_s": s} for _, a, s in runs],
        "resident_mb": resident_mb(device),
        "peak_mb": {str(t): peak_memory_mb(snn, x, t) for t in plan.memory_at},
    }


def light(plan: Plan, max_batch: int, cache_gb: float, device: torch.device) -> dict:
    """Time of the light pipeline on ``plan.light_images`` images against one simulation of them.

    A warm-up conversion of one calibration batch and a warm-up simulation of all the images
    compile the IF blocks of the shapes the timed runs see."""
    net, n, T = plan.light_net, plan.light_images, plan.T
    model, x = build(net, n, device)
    knobs = {"T": T, "method": "light", "max_batch": max_batch, "cache_gb": cache_gb}
    warm = min(n, WARM_IMAGES)
    snn = snncal.convert(model, x[:warm], num_images=warm, **knobs)
    snn.simulate(x)
    snn = None
    free_memory(device)
    convert_s, snn = timed(lambda: snncal.convert(model, x, num_images=n, **knobs), device)
    simulate_s, _ = timed(lambda: snn.simulate(x), device)
    return {
        **asdict(net), "images": n, "T": T, "if_layers": len(snn.neurons()), "convert_s": convert_s,
        "calibrate_s": snn.calibration.seconds, "simulate_s": simulate_s, "ratio": convert_s / simulate_s,
    }


def measure(fn: Callable[[], dict], label: str, device: torch.device) -> dict:
    """``fn()``, or ``{"name": label, "error": ...}`` if the GPU ran out of memory, so that one
    row that does not fit leaves the others to run; then the row's tensors are freed."""
    try:
        return fn()
    except torch.cuda.OutOfMemoryError as err:
        return {"name": label, "error": f"out of memory: {str(err).splitlines()[0]}"}
    finally:
        free_memory(device)


# -- report -----------------------------------------------------------------------------------------
def settings(args: argparse.Namespace, plan: Plan, device: torch.device) -> dict:
    """Everything a reader needs to re-run or compare: versions, device, plan and knobs."""
    cuda = device.type == "cuda"
    return {
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "tiny": args.tiny,
        "max_batch": args.max_batch,
        "cache_gb": args.cache_gb,
        "snncal_compile": os.environ.get("SNNCAL_COMPILE", "1"),
        "repeats": args.repeats,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if cuda else None,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
        "plan": asdict(plan),
    }


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def speed_table(rows: list[dict], plan: Plan) -> str:
    """The per-model rows as a Markdown table."""
    mem = [f"peak MiB, T={t}" for t in plan.memory_at]
    head = ["model", "input", "batch", "T", f"{plan.T} ANN passes (s)", "SNN simulate (s)",
            f"SNN / ({plan.T} x ANN)", "SNN images/s", "resident MiB", *mem]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} |" + " |" * (len(head) - 2))
            continue
        cells = [
            f"{r['name']}" + (f" x{r['width']}" if r["width"] != 1 else ""), f"{r['size']}x{r['size']}",
            str(r["batch"]), str(r["T"]), f"{r['ann_s']:.4f}", f"{r['snn_s']:.4f}", f"{r['ratio']:.2f}",
            f"{r['images_per_s']:.1f}", _num(r["resident_mb"], ".0f"),
            *(_num(r["peak_mb"][str(t)], ".0f") for t in plan.memory_at),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def light_table(r: dict) -> str:
    """The light pipeline row as a Markdown table."""
    head = ["model", "images", "T", "IF layers", "light pipeline (s)", "of which calibration (s)",
            "one simulation (s)", "light / simulation"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if "error" in r:
        return "\n".join([*lines, f"| {r['name']} | {r['error']} |" + " |" * (len(head) - 2)])
    cells = [
        r["name"] + (f" x{r['width']}" if r["width"] != 1 else ""), str(r["images"]), str(r["T"]),
        str(r["if_layers"]), f"{r['convert_s']:.2f}", f"{r['calibrate_s']:.2f}", f"{r['simulate_s']:.2f}",
        f"{r['ratio']:.2f}",
    ]
    return "\n".join([*lines, "| " + " | ".join(cells) + " |"])


def _say(start: float, text: str) -> None:
    print(f"[{time.perf_counter() - start:6.1f} s] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cuda (the default where available), cuda:N or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny widths and inputs: every path in seconds")
    p.add_argument("--max-batch", type=int, default=None,
                   help=f"time-folded batch (steps x images) of the engine and the calibration sweep "
                        f"(default: {CUDA_MAX_BATCH} on CUDA, the library's choice for the device "
                        f"elsewhere)")
    p.add_argument("--cache-gb", type=float, default=snncal.ConvertConfig().cache_gb,
                   help="the light pipeline's in-memory budget for spike trains (default: the library's)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per model (the median is kept)")
    p.add_argument("--out", default="gpu.json",
                   help="JSON results, rewritten after every row (gpu.sh: relative to the repository)")
    args = p.parse_args(argv)
    if args.max_batch is None:
        device = torch.device(args.device)
        args.max_batch = CUDA_MAX_BATCH if device.type == "cuda" else auto_max_batch(device)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    device = torch.device(args.device)
    plan = TINY if args.tiny else FULL
    result = {"complete": False, "settings": settings(args, plan, device), "models": [], "light": None}
    s = result["settings"]
    print(f"torch {s['torch']}, {s['device_name']} ({device}), max_batch {args.max_batch}, "
          f"cache_gb {args.cache_gb}, batch {plan.batch}, T {plan.T}, {s['threads']} threads"
          f"{', tiny' if args.tiny else ''}\n")
    for net in plan.nets:
        _say(start, f"{net.name}: converting, warming up, timing")
        run = functools.partial(speed, net, plan, args.max_batch, args.repeats, device)
        result["models"].append(measure(run, net.name, device))
        atomic_write_json(args.out, result)
    print(speed_table(result["models"], plan) + "\n", flush=True)
    _say(start, f"{plan.light_net.name}: light pipeline on {plan.light_images} images")
    run = functools.partial(light, plan, args.max_batch, args.cache_gb, device)
    result["light"] = measure(run, plan.light_net.name, device)
    print(light_table(result["light"]) + "\n", flush=True)
    result["wall_s"] = time.perf_counter() - start
    result["complete"] = True
    atomic_write_json(args.out, result)
    _say(start, f"done; wrote {args.out}")
    if device.type == "cuda" and result["wall_s"] > BUDGET_S:
        print(f"warning: {result['wall_s']:.0f} s, over this benchmark's budget of {BUDGET_S} s",
              file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
