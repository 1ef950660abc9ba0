"""Every figure in the live docs comes from a kept command and a committed data file.

The live docs are README.md and docs/*.md except docs/history.md (a dated record of figures that
can no longer be reproduced). The rules, checked here:

- A table printed by `benchmarks/tables.py` carries, on the line right above it, the marker
  ``<!-- table: python benchmarks/tables.py ARGS -->``; the table must equal what that command
  prints now from its data file (so a table or a data row edited by hand fails), in the live docs
  and in docs/history.md alike; the data file of a live table must say in its ``provenance``
  which command wrote it, and when.
- A Markdown table is a *figure* when a body cell holds a decimal number (``0.97``) or a
  percentage (``93 %``). Every figure is a marked, generated table, unless the line above it says
  ``<!-- table: settings, not a figure -->`` (numbers that are inputs, e.g. a training recipe).
- A live doc names only files that exist: every ``benchmarks/``, ``tests/``, ``snncal/`` or
  ``docs/`` path it mentions (scripts, data files, images), and every ``python X.py``, is in the
  repository.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "docs" / "history.md"
LIVE = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p != HISTORY)]
SETTINGS = "<!-- table: settings, not a figure -->"
FIGURE = re.compile(r"\d\.\d|\d ?%")
PATH = re.compile(r"\b((?:benchmarks|tests|snncal|docs)/[\w./-]*\.(?:py|sh|json|jsonl|md|png))\b")
SCRIPT = re.compile(r"\bpython3? ([\w./-]+\.py)\b")  # `python X.py`, wherever X lives


@functools.cache
def _benchmark(name: str = "tables"):
    """The module ``benchmarks/NAME.py``, which may import its neighbours."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


MARKER = _benchmark().MARKER


def tables_in(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line number, the line above, the table's lines)`` of every Markdown table outside code blocks."""
    lines = path.read_text().splitlines()
    found, fenced, i = [], False, 0
    while i < len(lines):
        if lines[i].startswith("```"):
            fenced = not fenced
        if not fenced and lines[i].startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            found.append((i + 1, lines[i - 1] if i else "", lines[i:j]))
            i = j
            continue
        i += 1
    return found


def _marked(docs: list[Path] = LIVE) -> list[tuple[str, int, str, list[str]]]:
    return [(f"{p.relative_to(ROOT)}:{n}", n, m.group(1), table)
            for p in docs for n, above, table in tables_in(p) if (m := MARKER.match(above))]


@pytest.mark.parametrize(("where", "args", "table"),
                         [pytest.param(w, a, t, id=w) for w, _, a, t in _marked([*LIVE, HISTORY])])
def test_generated_table_equals_its_data(where, args, table):
    argv = shlex.split(args)
    assert argv[0] != "reproduce", f"{where}: a marked table is printed from docs/data/, not from runs/"
    data_file = ROOT / argv[1]  # every printer: SUBCOMMAND DATA_FILE [options]
    assert data_file.is_file() and data_file.parent == ROOT / "docs" / "data", where
    printed = _benchmark().render(argv).splitlines()
    assert table == printed, f"{where} differs from `python benchmarks/tables.py {args}`"


def test_every_marker_is_right_above_a_table():
    for p in [*LIVE, HISTORY]:
        markers = sum(bool(MARKER.match(line)) for line in p.read_text().splitlines())
        assert markers == len(_marked([p])), f"{p.relative_to(ROOT)}: a table marker with no table under it"


def test_every_data_file_of_a_table_says_how_it_was_made():
    import json

    for where, _, args, _ in _marked():
        provenance = json.loads((ROOT / shlex.split(args)[1]).read_text())["provenance"]
        assert provenance.get("command") and provenance.get("date"), where
        script = re.match(r"python (\S+\.py)", provenance["command"])
        assert script is None or (ROOT / script.group(1)).is_file(), (where, provenance["command"])


def test_every_figure_table_is_generated():
    loose = []
    for p in LIVE:
        for n, above, table in tables_in(p):
            if MARKER.match(above) or above == SETTINGS:
                continue
            if any(FIGURE.search(cell) for row in table[2:] for cell in row.split("|")):
                loose.append(f"{p.relative_to(ROOT)}:{n}: {table[0]}")
    assert not loose, "figures not printed by benchmarks/tables.py:\n" + "\n".join(loose)


def test_live_docs_name_only_files_that_exist():
    missing = [f"{p.relative_to(ROOT)}: {m}" for p in LIVE
               for m in PATH.findall(p.read_text()) + SCRIPT.findall(p.read_text())
               if not (ROOT / m).exists()]
    assert not missing, "\n".join(missing)


def test_the_rules_catch_a_hand_edited_table(tmp_path):
    """The checks above can fail: an edited cell no longer equals the printer's output, and a
    figure table without a marker is found."""
    (_, _, args, table) = next(t for t in _marked() if "quickstart" in t[2])
    edited = [*table[:-1], table[-1].replace("93.", "94.")]
    assert edited != _benchmark().render(shlex.split(args)).splitlines()
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n| a | b |\n|---|---|\n| x | 0.97 |\n")
    ((_, above, rows),) = tables_in(doc)
    assert not MARKER.match(above) and FIGURE.search(rows[2])


def test_tables_refuse_a_file_of_another_kind_and_an_empty_selection_in_one_line():
    render = _benchmark().render
    with pytest.raises(SystemExit, match=r"^tables.py calibrated: docs/data/peers_cifar.json is not a file"):
        render(["calibrated", "docs/data/peers_cifar.json"])
    with pytest.raises(SystemExit, match=r"^tables.py table9: no rows of .* a T of 0$"):
        render(["table9", "docs/data/table9_mobilenet_cifar.json", "--methods", "light", "--T", "0"])


def test_a_kept_command_keeps_every_flag_given():
    """collect.py rebuilds the command of a results file from its settings: a flag turned off
    (``--no-per-channel``) is part of the command, an option not given is not."""
    collect = _benchmark("collect")
    config = {"command": "sweep", "T": [32, 128], "per_channel": False, "progress": True,
              "threshold": "max", "weight_iters": None, "verbose": 0}
    assert collect._command(config) == "snncal sweep --T 32 128 --no-per-channel --progress --threshold max"
