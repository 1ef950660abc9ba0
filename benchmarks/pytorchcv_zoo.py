"""Which pytorchcv classifiers convert: every model of pytorchcv 0.0.74's provider, tried.

Each model is built on the meta device (no memory, no download); one whose output on a batch of
its ``in_size`` is not ``[N, classes]`` is not a classifier (segmentation, detection, pose, ...)
and is left out. A classifier is traced and checked by snncal's own graph passes on the meta
device (`snncal.core.graph`: trace, one activation module per call, dropout removed, max pools to
average pools, the op check); a refusal records the product's one-line reason (the op and the
source line). The first of each family and data set that passes (every one, with ``--convert
all``: about an hour) is built again with random weights and converted (`snncal.convert`, max
thresholds, T = 2, max pools replaced by average pools, one image of its ``in_size``); the row
records the number of IF neurons and how far the converted graph's ANN (`snn.ann`) is from the
model, relative to the model's largest output
(for models without max pools, whose replacement changes the ANN, it must be below 1e-4).
The record of docs/results.md (docs/data/pytorchcv_zoo.json), about 40 minutes on one
thread (most of it tracing pytorchcv's 1000-layer CIFAR networks):

    python benchmarks/pytorchcv_zoo.py --threads 1 --out docs/data/pytorchcv_zoo.json

`snncal/ann/models/pc.py` registers the classifiers this run converts as ``pc_<name>``.
"""

from __future__ import annotations

import argparse
import re
import time
import warnings

import tables
import torch
from pytorchcv.model_provider import _models
from record import provenance, write_json

import snncal
from snncal.core.graph import ConversionError, passes
from snncal.core.graph.checks import check_supported
from snncal.core.graph.trace import propagate, trace

DATASETS = ("cifar100", "cifar10", "svhn", "cub", "imagenet")
EXACT = 1e-4  # largest |snn.ann(x) - model(x)| / max |model(x)| of a conversion that keeps the ANN


def dataset(name: str) -> str:
    """The data set a pytorchcv name is for: its suffix, else ImageNet."""
    return next((d for d in DATASETS[:-1] if name.endswith("_" + d)), "imagenet")


def family(name: str) -> str:
    """pytorchcv's module of the model (``resnet``, ``mobilenet``, ...): one row of the summary."""
    return _models[name].__module__.rsplit(".", 1)[-1]


def _reason(err: Exception) -> str:
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"\S*/(site-packages|snncal)/", r"\1/", line)[:300]


def _build(name: str, device: str) -> torch.nn.Module:
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        return _models[name](pretrained=False).eval()


def meta_check(name: str) -> dict:
    """Build on the meta device; is it a classifier, and do snncal's graph checks pass?"""
    net = _build(name, "meta")
    size = tuple(getattr(net, "in_size", (224, 224)))
    x = torch.empty(1, 3, *size, device="meta")
    with torch.no_grad():
        out = net(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        return {"input": "x".join(map(str, size)), "result": "not a classifier"}
    gm = trace(net)
    propagate(gm, x)
    gm = passes.remove_dropout(passes.canonicalize_activations(gm))
    check_supported(passes.maxpool_to_avgpool(gm))
    return {"input": "x".join(map(str, size)), "classes": out.shape[1]}


@torch.no_grad()
def convert(name: str, size: tuple[int, int]) -> dict:
    """Random weights, one image: convert, and compare the converted graph's ANN with the model."""
    torch.manual_seed(0)
    net = _build(name, "cpu")
    x = torch.rand(1, 3, *size)
    snn = snncal.convert(net, x, T=2, threshold="max", maxpool_to_avgpool=True)
    ref = net(x)
    diff = float((snn.ann(x) - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    maxpool = any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    return {"neurons": len(snn.neurons()), "maxpool": maxpool, "ann_diff": diff}


def check(name: str, convert_it: bool = True) -> dict:
    """One model's row; without ``convert_it``, a classifier that passes the checks is not built."""
    row: dict = {"model": name, "family": family(name), "dataset": dataset(name)}
    t0 = time.perf_counter()
    try:
        row.update(meta_check(name))
    except ConversionError as err:
        return {**row, "result": "refused", "reason": _reason(err), "seconds": time.perf_counter() - t0}
    except Exception as err:  # a model that does not build or run at its in_size
        return {**row, "result": "build failed", "reason": f"{type(err).__name__}: {_reason(err)}",
                "seconds": time.perf_counter() - t0}
    if "result" in row or not convert_it:
        return {"result": "checks pass", **row, "seconds": time.perf_counter() - t0}
    size = tuple(int(s) for s in row["input"].split("x"))
    try:
        row.update(convert(name, size))
        exact = row["ann_diff"] < EXACT or row["maxpool"]  # average pools change the ANN
        row["result"] = "converts" if exact else "converts, ANN differs"
    except ConversionError as err:
        row.update(result="refused", reason=_reason(err))
    except Exception as err:
        row.update(result="failed", reason=f"{type(err).__name__}: {_reason(err)}")
    return {**row, "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(_models))
    p.add_argument("--convert", choices=("first", "all"), default="first",
                   help="convert every classifier that passes the checks, or the first of each family "
                        "and data set (the others: 'checks pass')")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", help="write the rows here (JSON; docs/data/pytorchcv_zoo.json is the record)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import pytorchcv

    record = {"provenance": {**provenance(args.threads), "pytorchcv": pytorchcv.__version__},
              "rows": []}
    converted: set[tuple[str, str]] = set()
    for name in args.models:
        key = (family(name), dataset(name))
        row = check(name, args.convert == "all" or key not in converted)
        if "neurons" in row:
            converted.add(key)
        record["rows"].append(row)
        print(f"{name}: {row['result']} {row.get('reason', '')} ({row['seconds']:.1f} s)", flush=True)
    print(tables.pytorchcv(record))
    if args.out:
        write_json(args.out, record)


if __name__ == "__main__":
    main()
