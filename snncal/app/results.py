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
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from snncal.core import distributed as dist
from snncal.core.files import FileFormatError, atomic_write_json, atomic_write_text, to_plain

__all__ = [
    "ResultsFile",
    "Row",
    "summarize",
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


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: file A vs now B"`` for each entry that differs, nested dicts by their dotted keys."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: file {a!r} vs now {b!r}")
    return out


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
        diff = _differences(saved.get("protocol", {}), self.protocol)
        if diff:
            raise ValueError(
                f"{self.path} holds results of another protocol ({'; '.join(diff)}); "
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
