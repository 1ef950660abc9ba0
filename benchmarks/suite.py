"""How long the test suite takes: `make test` on a fresh clone of each given commit, one after another.

Each commit is cloned into a temporary folder and runs the README's test command (`make test`: a
fresh venv, the dev extras, ruff, pytest), as CI does, with an empty torch.compile kernel cache
(``TORCHINDUCTOR_CACHE_DIR`` in the temporary folder), as on a new machine. A row holds the
commit, the number of tests pytest ran and its own time (from its closing line), and the wall
time of the whole `make test` (the venv install included). Commits run in the order given, in
the same session, so their rows can be compared. Rows of other commits already in ``--out`` are
kept (with the provenance of the run that wrote them, under ``earlier_runs``). The record in
docs/benchmarks.md (docs/data/suite.json):

    python benchmarks/suite.py --commits cc6980a main --out docs/data/suite.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import ROOT, provenance, write_json

SUMMARY = re.compile(r"^=* ?(?P<counts>.*\d+ passed.*?) in (?P<seconds>[\d.]+)s")


def run(commit: str) -> dict:
    """One fresh clone of ``commit`` and its ``make test``."""
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "--verify", "--quiet",
                            f"{commit}^{{commit}}"], capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"suite.py: {commit!r} is not a commit of {ROOT}")
    sha = found.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="snncal-suite-") as tmp:
        clone = Path(tmp) / "snncal"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", sha], check=True)
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")}  # compiled
        start = time.perf_counter()  # kernels cached by earlier runs would hide what a new machine pays
        done = subprocess.run(["make", "test"], cwd=clone, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    lines = [m for line in done.stdout.splitlines() if (m := SUMMARY.match(line.strip("= ")))]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise SystemExit(f"suite.py: make test at {sha} failed (rc {done.returncode}):\n{tail}")
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|skipped)", lines[-1]["counts"]))
    return {"commit": sha, "passed": counts.get("passed", 0), "skipped": counts.get("skipped", 0),
            "pytest_s": float(lines[-1]["seconds"]), "make_test_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", nargs="+", required=True, help="commits or branches, run in this order")
    ap.add_argument("--out", default=None, help="write the rows here (a docs/data record)")
    args = ap.parse_args(argv)
    old = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {"rows": []}
    rows: list[dict] = []
    for commit in args.commits:
        rows.append(run(commit))
        print(rows[-1], flush=True)
        if args.out:  # after every commit, so an interrupted run keeps what it measured; rows of
            done = {r["commit"] for r in rows}  # other commits stay, with their run's provenance
            kept = [r for r in old["rows"] if r["commit"] not in done]
            earlier = [*old.get("earlier_runs", []), old["provenance"]] if kept else []
            write_json(args.out, {"provenance": provenance(threads=1),  # tests: 1 thread (conftest)
                                  "earlier_runs": earlier, "rows": kept + rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
