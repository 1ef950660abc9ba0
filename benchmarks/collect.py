"""Keep the results of long runs as a data file of docs/data/, with how they were made.

    python benchmarks/collect.py results docs/data/seed_spread_resnet20_he.json \\
        runs/spread_light/sweep.json runs/spread_advanced/sweep.json
    python benchmarks/collect.py training docs/data/training.json runs/resnet20_he runs/mobilenet_cifar

``results`` merges the rows of `snncal sweep` / `snncal reproduce` results files that share one
protocol (checkpoint, data set, test subset: it refuses others) and keeps each file's settings and
the command that wrote it. ``training`` keeps, per `snncal train` folder, its recipe and per-epoch
history. `benchmarks/tables.py` prints the docs' tables from either.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import torch
from record import provenance, write_json


def _command(config: dict) -> str:
    """The `snncal` command line a results file's ``config`` records."""
    args = [f"snncal {config['command']}"]
    for key, value in config.items():
        if key in ("command", "verbose") or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):  # a flag given: --name or --no-name
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            args.append(flag + " " + " ".join(shlex.quote(str(v)) for v in value))
        else:
            args.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(args)


def results(paths: list[str]) -> dict:
    """One record of the rows of several results files of the same protocol."""
    files = [json.loads(Path(p).read_text()) for p in paths]
    protocol = files[0]["protocol"]
    for path, f in zip(paths, files, strict=True):
        differ = [k for k in ("checkpoint_sha256", "dataset", "test_images")
                  if f["protocol"].get(k) != protocol.get(k)]
        if differ:
            raise SystemExit(f"{path}: another protocol than {paths[0]} ({', '.join(differ)})")
    return {"ann": files[0]["ann"], "protocol": protocol,
            "runs": [{"command": _command(f["config"]), "convert": f["protocol"]["convert"]} for f in files],
            "rows": [row for f in files for row in f["rows"]]}


def training(folders: list[str]) -> dict:
    """Per training folder: the architecture, the recipe and the per-epoch history."""
    runs = []
    for folder in map(Path, folders):
        meta = json.loads((folder / "last.json").read_text())
        runs.append({"arch": meta["arch"], "recipe": meta["recipe"],
                     "history": json.loads((folder / "history.json").read_text())})
    return {"runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["results", "training"])
    p.add_argument("out", help="the data file to write (docs/data/...)")
    p.add_argument("inputs", nargs="+", help="results files, or training folders")
    p.add_argument("--note", help="how the runs ran (e.g. what else shared the machine)")
    args = p.parse_args()
    record = results(args.inputs) if args.kind == "results" else training(args.inputs)
    prov = provenance(torch.get_num_threads()) | ({"note": args.note} if args.note else {})
    write_json(args.out, {"provenance": prov, **record})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
