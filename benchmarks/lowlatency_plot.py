"""Accuracy against T per method for issue 14's record: the ablation rows (docs/data/
lowlatency_ablation.jsonl, default learning rate) and the rows of a `snncal reproduce` results file.

    python benchmarks/lowlatency_plot.py runs/table9_resnet20_he/reproduce.json resnet20_he_cifar10 \
        docs/img/lowlatency_resnet20_he.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from snncal.app import plots
from snncal.app.results import Row

NAMES = {"tbias+potential": "light+", "weight+tbias+potential": "advanced+"}
METHODS = ["none", "light", "advanced", "light+", "advanced+"]


def main() -> None:
    if len(sys.argv) != 4 or not Path(sys.argv[1]).is_file():
        sys.exit("usage: lowlatency_plot.py RESULTS.json CHECKPOINT_NAME OUT.png (RESULTS.json must exist)")
    results, checkpoint, out = sys.argv[1:4]
    data = json.loads(Path(results).read_text())
    rows = {(r["method"], r["T"]): Row(**r) for r in data["rows"] if r["method"] in METHODS}
    for line in Path("docs/data/lowlatency_ablation.jsonl").read_text().splitlines():
        r = json.loads(line)
        method = NAMES.get(r["method"], r["method"])
        if checkpoint in r["ckpt"] and not r["kw"] and method in METHODS:
            row = Row(method, r["T"], 0, r["acc"], 2000, r["calib_s"], r["eval_s"])
            rows.setdefault((method, r["T"]), row)
    ann = data["ann"]["acc"]
    path = plots.plot_accuracy(list(rows.values()), out, ann, title=checkpoint, methods=METHODS)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
