"""Tables and a plot from a results file of `snncal sweep` / `snncal reproduce`, for any subset of
its rows (the commands print the table of the grid they ran; this shows rows from several runs).

    python benchmarks/tables.py runs/table9_resnet20_he/reproduce.json --methods none light advanced \
        light+ advanced+ --T 8 16 32 64 --plot docs/img/lowlatency_resnet20_he.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from snncal.app.paper import NETWORKS
from snncal.app.results import Row, seconds_table, table9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="a reproduce.json / sweep.json")
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--T", nargs="+", type=int, required=True)
    p.add_argument("--arch", help="the zoo architecture, for the paper's rows (default: the file's)")
    p.add_argument("--plot", help="write accuracy against T here (PNG)")
    args = p.parse_args()
    try:
        data = json.loads(Path(args.results).read_text())
    except (OSError, ValueError) as err:
        p.error(f"cannot read results file {args.results}: {err}")
    rows = [Row(**r) for r in data["rows"] if r["method"] in args.methods and r["T"] in args.T]
    ann = data["ann"]["acc"]
    network = NETWORKS.get(args.arch or data["ann"].get("arch") or data["protocol"].get("arch", ""))
    print(f"ANN {ann:.2f} % on {data['protocol']['test_images']}\n")
    print(table9(rows, ann, args.methods, args.T, network))
    gaps = {(r.method, r.T): ann - r.acc for r in rows}
    print("\nGap (ANN - SNN, points):\n")
    print("| Method | " + " | ".join(f"T={T}" for T in args.T) + " |")
    print("|---|" + "---|" * len(args.T))
    for m in args.methods:
        cells = [f"{gaps[(m, T)]:.2f}" if (m, T) in gaps else "-" for T in args.T]
        print(f"| {m} | " + " | ".join(cells) + " |")
    print("\nConversion seconds (calibration included):\n")
    print(seconds_table(rows, args.methods, args.T))
    if args.plot:
        from snncal.app import plots

        plots.plot_accuracy(rows, args.plot, ann, title=Path(args.results).parent.name, methods=args.methods)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
