"""NIR export of the model zoo: does the exported graph reproduce the SNN?

Each model, at a small width (snncal's own models; torchvision's take no width) with random
weights (BatchNorm statistics randomised, so that folding is exercised), is converted (max
thresholds, reset to zero, T = 2, max pools replaced by average pools, as torchvision's models
need), exported with `snncal.export_nir`, read back from the file with `nir.read`, and run by the
reference consumer (`snncal.core.export.nir_reference.run_nir`) on the same input as
`snn.simulate`; the row records the largest difference of their outputs, or the error the
conversion or export raised. The record of docs/interop.md (docs/data/nir_zoo.json), a few
minutes on one thread:

    python benchmarks/nir_zoo.py --threads 1 --out docs/data/nir_zoo.json
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import warnings
from pathlib import Path

import tables
import torch
from record import provenance, write_json

import snncal
import snncal.ann.models as zoo
from snncal.ann.models import randomize_bn
from snncal.core.export.nir_reference import run_nir

MODELS = [
    "cnn_small", "mobilenet", "mobilenet_cifar", "resnet20", "resnet20_he", "resnet32_he", "resnet34",
    "resnet56_he", "vgg16", "vgg16_bn", "tv_alexnet", "tv_densenet121", "tv_googlenet",
    "tv_inception_v3", "tv_mnasnet0_5", "tv_mobilenet_v2", "tv_regnet_x_400mf", "tv_resnet18",
    "tv_resnext50_32x4d", "tv_shufflenet_v2_x0_5", "tv_squeezenet1_1", "tv_vgg11_bn",
]
WIDTH, T, BATCH = 0.25, 2, 2


def input_size(name: str) -> int:
    """The smallest input each model is meant for here: 32 for CIFAR models, 64 for ImageNet ones,
    96 for Inception v3 (its stem needs 75)."""
    if name == "tv_inception_v3":
        return 96
    return 64 if name.startswith("tv_") or name in ("resnet34", "mobilenet") else 32


@torch.no_grad()
def check(name: str, tmp: Path) -> dict:
    """Convert, export, read back and run one zoo model; its row."""
    import nir

    size = input_size(name)
    width = 1.0 if name.startswith("tv_") else WIDTH
    row: dict = {"model": name, "width": width, "input": f"{size}x{size}", "T": T}
    torch.manual_seed(0)
    model = randomize_bn(zoo.create(name, num_classes=10, width=width))
    x = torch.rand(BATCH, 3, size, size)
    t0 = time.perf_counter()
    try:
        snn = snncal.convert(model, x, T=T, reset="zero", threshold="max", maxpool_to_avgpool=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the one semantics warning of every export
            snncal.export_nir(snn, tmp / f"{name}.nir")
    except ValueError as err:  # ConversionError: the op, the node, the source line
        error = re.sub(r"\S*/(site-packages|snncal)/", r"\1/", str(err).splitlines()[0])
        return {**row, "error": error, "seconds": time.perf_counter() - t0}
    graph = nir.read(tmp / f"{name}.nir")
    diff = (run_nir(graph, x, T) - snn.simulate(x, T)).abs().max().item()
    return {**row, "nir_nodes": len(graph.nodes), "max_diff": diff, "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", help="write the rows here (JSON; docs/data/nir_zoo.json is the record)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    record = {"provenance": provenance(args.threads), "width": WIDTH, "T": T, "batch": BATCH, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            record["rows"].append(check(name, Path(tmp)))
            print(tables.nir({"rows": record["rows"][-1:]}).splitlines()[-1], flush=True)
    print(tables.nir(record))
    if args.out:
        write_json(args.out, record)


if __name__ == "__main__":
    main()
