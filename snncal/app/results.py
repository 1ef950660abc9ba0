"""Results are data: dataclass rows -> JSON / CSV / Markdown, written atomically, resumable.

A :class:`ResultsFile` is one JSON document ``{"format", "config", "protocol", "ann", "rows",
"extra"}`` rewritten atomically after every row, so an interrupted experiment loses at most the row
it was running and a rerun skips the rows that are done.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from snncal.app.paper import published
from snncal.core import distributed as dist
from snncal.core.files import FileFormatError, atomic_write_json, atomic_write_text, to_plain

__all__ = [
    "ResultsFile",
    "Row",
    "accuracy_table",
    "markdown_table",
    "seconds_table",
    "summarize",
    "table9",
    "to_csv",
    "write_csv",
]

FORMAT = "snncal-results/2"


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Scalars as they are, anything nested as compact JSON (one CSV cell)."""
    return {
        k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
        for k, v in to_plain(row).items()
    }


def to_csv(rows: Iterable[Any]) -> str:
    """CSV text of dataclass or dict rows; columns in first-seen order."""
    flat = [_flat(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def write_csv(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write :func:`to_csv` of ``rows`` atomically."""
    return atomic_write_text(path, to_csv(rows))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; text columns align left, numbers right; ``|`` in cells is escaped."""
    cells = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    numeric = [
        all(_is_number(r[i]) for r in cells if i < len(r) and r[i] not in ("", "-")) and bool(cells)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells if i < len(r)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if num else ":" + "-" * (w + 1) for w, num in zip(widths, numeric)
    ) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in cells)]) + "\n"


def _is_number(text: str) -> bool:
    try:
        float(text.split(" ")[0])
    except ValueError:
        return False
    return True


@dataclass
class Row:
    """One converted network evaluated at one T: the unit of an experiment."""

    method: str
    T: int
    seed: int
    acc: float  # top-1 % of the SNN on the test images
    test_images: int
    convert_seconds: float
    eval_seconds: float
    agreement: float | None = None  # % of test images on which the SNN predicts the ANN's class
    logit_mse: float | None = None  # mean squared distance of the SNN's logits from the ANN's
    calib_mse_before: float | None = None  # mean over layers of the rate MSE vs the ANN
    calib_mse_after: float | None = None
    threads: int | None = None  # CPU threads: calibration sums depend on how they split the work
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.method, self.T, self.seed)


def summarize(rows: Iterable[Row]) -> dict[tuple[str, int], tuple[float, float, int]]:
    """``(method, T) -> (mean acc, std acc, seeds)`` over seeds (std 0 for one seed)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r.method, r.T), []).append(r.acc)
    return {
        k: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
        for k, v in groups.items()
    }


def _cells(stats: dict, method: str, Ts: Sequence[int], digits: int) -> list[str]:
    cells = []
    for T in Ts:
        if (method, T) not in stats:
            cells.append("-")
            continue
        mean, std, n = stats[(method, T)]
        cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}")
    return cells


def accuracy_table(
    rows: Sequence[Row],
    ann_acc: float | None,
    methods: Sequence[str] | None = None,
    Ts: Sequence[int] | None = None,
    digits: int = 2,
    columns: dict[str, str] | None = None,
) -> str:
    """The paper's layout (Li et al. 2021, Table 9): one row per method, ANN accuracy, one column per T.

    Cells are ``mean ± std`` over seeds when there are several, ``-`` when missing. ``columns``
    (name -> value, the same on every row, e.g. ``{"Use BN": "yes"}``) go between method and ANN.
    """
    columns = columns or {}
    stats = summarize(rows)
    methods = list(methods or dict.fromkeys(r.method for r in rows))
    Ts = sorted(Ts or {r.T for r in rows})
    ann = "-" if ann_acc is None else f"{ann_acc:.{digits}f}"
    body = [[m, *columns.values(), ann, *_cells(stats, m, Ts, digits)] for m in methods]
    return markdown_table(["Method", *columns, "ANN", *(f"T={T}" for T in Ts)], body)


def seconds_table(rows: Sequence[Row], methods: Sequence[str], Ts: Sequence[int]) -> str:
    """Conversion (calibration) seconds of each method at each T, mean over seeds: what a method
    costs, next to what it gains."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r.method, r.T), []).append(r.convert_seconds)
    Ts = sorted(Ts)
    body = [[m, *(f"{statistics.fmean(groups[(m, T)]):.0f}" if (m, T) in groups else "-" for T in Ts)]
            for m in methods]
    return markdown_table(["Method", *(f"T={T}" for T in Ts)], body)


def table9(
    rows: Sequence[Row],
    ann_acc: float | None,
    methods: Sequence[str],
    Ts: Sequence[int],
    network: str | None,
    columns: dict[str, str] | None = None,
) -> str:
    """:func:`accuracy_table` with, under each of our rows, the paper's published row for the same
    network (Li et al. 2021, Table 9, CIFAR-10) when there is one; its last column is T >= 2048."""
    columns = columns or {}
    stats = summarize(rows)
    Ts = sorted(Ts)
    body = []
    for m in methods:
        ann = "-" if ann_acc is None else f"{ann_acc:.2f}"
        body.append([m, *columns.values(), ann, *_cells(stats, m, Ts, 2)])
        paper = published(network, m)
        if paper is not None:
            ann, by_T = paper
            cells = [by_T.get(min(T, 2048)) for T in Ts]
            body.append([f"{m} (paper)", *("" for _ in columns), f"{ann:.2f}",
                         *("-" if c is None else f"{c:.2f}" for c in cells)])
    return markdown_table(["Method", *columns, "ANN", *(f"T={T}" for T in Ts)], body)


class ResultsFile:
    """A resumable results file of :class:`Row` s, rewritten atomically after each row.

    The file holds ``config`` (everything the run was given), ``protocol``, ``ann`` (the ANN's
    accuracy), ``rows`` and ``extra`` (anything else: timings, firing rates, file names).

    Args:
        path: the JSON file.
        config: the run's full configuration, echoed into the file.
        protocol: the entries of ``config`` that decide the numbers (model, data, conversion
            options); resuming a file written under another protocol raises ValueError.
    """

    def __init__(self, path: str | Path, config: dict[str, Any], protocol: dict[str, Any]) -> None:
        self.path = Path(path)
        self.config, self.protocol = to_plain(config), to_plain(protocol)
        self.rows: list[Row] = []
        self.ann: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        if self.path.exists():
            self._resume(self._read())

    def _read(self) -> dict[str, Any]:
        try:
            saved = json.loads(self.path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FileFormatError(f"{self.path} is not a results file ({err}); delete it or use "
                                  "another --out") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise FileFormatError(f"{self.path} is not a snncal results file of format {FORMAT}; "
                                  "delete it or use another --out")
        return saved

    def _resume(self, saved: dict[str, Any]) -> None:
        old = saved.get("protocol", {})
        diff = sorted(k for k in set(old) | set(self.protocol) if old.get(k) != self.protocol.get(k))
        if diff:
            detail = "; ".join(f"{k}: file {old.get(k)!r} vs now {self.protocol.get(k)!r}" for k in diff)
            raise ValueError(
                f"{self.path} holds results of another protocol ({detail}); "
                "use another --out or delete the file"
            )
        names = {f.name for f in fields(Row)}
        try:
            self.rows = [Row(**{k: v for k, v in r.items() if k in names}) for r in saved.get("rows", [])]
        except (TypeError, AttributeError) as err:
            raise FileFormatError(f"{self.path}: a row is damaged ({err}); delete the file or use "
                                  "another --out") from None
        self.ann = saved.get("ann", {})
        self.extra = saved.get("extra", {})

    def done(self, key: tuple[str, int, int]) -> bool:
        """Whether the row ``(method, T, seed)`` is in the file."""
        return any(r.key == key for r in self.rows)

    def add(self, row: Row) -> None:
        """Append ``row`` (replacing one with the same key) and rewrite the file."""
        self.rows = [r for r in self.rows if r.key != row.key] + [row]
        self.save()

    def set_ann(self, **values: Any) -> None:
        """Record the ANN's accuracy (and anything else about it) and rewrite the file."""
        self.ann.update(to_plain(values))
        self.save()

    def set_extra(self, **values: Any) -> None:
        """Record anything else about the run (timings, firing rates, file names) and rewrite the file."""
        self.extra.update(to_plain(values))
        self.save()

    def save(self) -> None:
        """Rewrite the file atomically (under ``torch.distributed``, rank 0 alone writes)."""
        if not dist.is_main():
            return
        atomic_write_json(self.path, {
            "format": FORMAT, "config": self.config, "protocol": self.protocol, "ann": self.ann,
            "rows": self.rows, "extra": self.extra,
        })
