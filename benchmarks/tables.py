"""The docs' tables of figures, each printed from its data file in docs/data/, and tables and a plot
from a results file of `snncal sweep` / `snncal reproduce`.

    python benchmarks/tables.py quickstart docs/data/quickstart.json \
        --plot docs/img/quickstart_accuracy_vs_T.png                      # README, make demo
    python benchmarks/tables.py speed docs/data/simulate.json             # docs/benchmarks.md
    python benchmarks/tables.py memory docs/data/simulate.json
    python benchmarks/tables.py calibration docs/data/calibration.json
    python benchmarks/tables.py nir docs/data/nir_zoo.json                # docs/interop.md
    python benchmarks/tables.py peers docs/data/peers.json
    python benchmarks/tables.py pytorchcv docs/data/pytorchcv_zoo.json   # docs/results.md
    python benchmarks/tables.py fidelity docs/data/fidelity_depthwise.json
    python benchmarks/tables.py suite docs/data/suite.json                # docs/benchmarks.md
    python benchmarks/tables.py accuracy docs/data/accuracy_resnet20_he.json \
        --methods none light advanced --T 16 32                           # docs/history.md
    python benchmarks/tables.py ablation docs/data/lowlatency_ablation.jsonl \
        --network resnet20_he_cifar10 --T 16 --labels light tbp wtp
    python benchmarks/tables.py reproduce docs/data/lowlatency_resnet20_he.json \
        --methods light advanced advanced+ --T 4 8 16 32 --plot docs/img/lowlatency_r20.png
    python benchmarks/tables.py spread docs/data/seed_spread_resnet20_he.json    # docs/results.md
    python benchmarks/tables.py layers docs/data/layers_mobilenet_cifar.json
    python benchmarks/tables.py training docs/data/training.json
    python benchmarks/tables.py calibrated docs/data/ablation_mobilenet_cifar.json
    python benchmarks/tables.py readout docs/data/readout_delay_resnet20_he.json
    python benchmarks/tables.py table9 docs/data/table9_mobilenet_cifar.json \
        --methods none opt light advanced light+ advanced+ --T 16 32 --part gap   # one table

A doc marks each table printed here with ``<!-- table: python benchmarks/tables.py ARGS -->`` on the
line above it; tests/test_docs.py prints the table again from the data file and compares, and

    python benchmarks/tables.py update README.md docs/*.md

rewrites every marked table from its data file.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from snncal.app.paper import NETWORKS
from snncal.app.results import Row, summarize
from snncal.app.tables import accuracy_table, markdown_table, seconds_table


def _read(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"tables.py: cannot read {path}: {err}") from err


def _by_method_T(rows: Iterable[tuple[str, int, float]]) -> dict[tuple[str, int], list[float]]:
    """Each (method, T)'s accuracies over ``(method, T, accuracy)`` rows (seeds), in their order."""
    accs: dict[tuple[str, int], list[float]] = {}
    for method, T, acc in rows:
        accs.setdefault((method, T), []).append(acc)
    return accs


def _help(fn: Any) -> str:
    """A printer's first docstring line as argparse help (which formats it with %)."""
    return fn.__doc__.splitlines()[0].replace("%", "%%")


def _quickstart_rows(data: dict) -> list[Row]:
    # the recorded run kept accuracies only, not each row's seconds
    return [Row(**{"convert_seconds": None, "eval_seconds": None, **r}) for r in data["rows"]]


def quickstart(data: dict) -> str:
    """`make demo`'s table: SNN top-1 % of each method at each T, the ANN beside them. The data is
    a quickstart's ``results.json`` (``runs/quickstart``) or its record, docs/data/quickstart.json:
    the same ``ann`` and ``rows``, plus the ``provenance`` of the run."""
    rows = _quickstart_rows(data)
    return accuracy_table(rows, data["ann"]["acc"], list(dict.fromkeys(r.method for r in rows)))


def quickstart_plot(data: dict, path: str) -> None:
    """`make demo`'s plot (accuracy against T) from the same rows."""
    from snncal.app import plots

    rows = _quickstart_rows(data)
    title = f"cnn_small on Fashion-MNIST: SNN accuracy on {rows[0].test_images} test images"
    plots.plot_accuracy(rows, path, data["ann"]["acc"], title)


def speed(data: dict) -> str:
    """`benchmarks/simulate.py`: one T-step simulation against T ANN forward passes."""
    body = [[r["model"], r["batch"], r["T"], f"{r['ann_s']:.4f}", f"{r['snn_s']:.3f}", f"{r['ratio']:.2f}",
             " / ".join(f"{x:.2f}" for x in r["ratios"])] for r in data["speed"]]
    return markdown_table(["model", "batch", "T", "ANN forward (s)", "SNN simulate (s)",
                           "SNN / (T x ANN), median", "each repeat"], body)


def memory(data: dict) -> str:
    """`benchmarks/simulate.py --memory-T`: what one simulation adds, resident and tensor MB, at each T."""
    rows = data["memory"]
    Ts = list(dict.fromkeys(r["T"] for r in rows))
    cell = {(r["model"], r["T"]): r for r in rows}
    body = []
    for model in dict.fromkeys(r["model"] for r in rows):
        batch = next(r["batch"] for r in rows if r["model"] == model)
        cells = [f"{cell[model, T]['rss_mb']:.1f} / {cell[model, T]['tensor_mb']:.1f}"
                 if (model, T) in cell else "-" for T in Ts]
        body.append([model, batch, *cells])
    return markdown_table(["model", "batch", *(f"T={T}: resident / tensors (MB)" for T in Ts)], body)


def calibration(data: dict) -> str:
    """`benchmarks/calibration.py`: a method's calibration against depth and against one simulation."""
    body = [[r["model"], r["images"], r["T"], r["layers"], f"{r['thresholds_s']:.1f}",
             f"{r['calibrate_s']:.1f}", f"{r['per_layer_s']:.2f}", f"{r['simulate_s']:.1f}",
             f"{r['ratio']:.2f}"] for r in data["rows"]]
    return markdown_table(["model", "images", "T", "IF layers", "ANN thresholds alone (s)",
                           "calibration (s)", "s / layer", "one simulation (s)",
                           "calibration / simulation"], body)


def nir(data: dict) -> str:
    """`benchmarks/nir_zoo.py`: each zoo model exported to NIR and run by the reference consumer."""
    body = []
    for r in data["rows"]:
        if "error" in r:  # "cannot export node 'n' (op) at file:line `source` to NIR: reason"
            where = re.search(r"node '([^']+)' \((.*?)\) at ", r["error"])
            reason = re.split(r"`(?: to NIR)?: ", r["error"], maxsplit=1)[-1]
            result = f"refused at `{where[1]}` ({where[2]}): {reason}" if where else r["error"]
        else:
            result = "exact" if r["max_diff"] == 0 else f"differs by {r['max_diff']:.3g}"
        body.append([r["model"], f"{r['width']:g}", r["input"], r.get("nir_nodes", "-"), result])
    return markdown_table(["model", "width", "input", "NIR nodes", "NIR graph against snn.simulate"], body)


def accuracy(data: dict, methods: Sequence[str], Ts: Sequence[int]) -> str:
    """A CIFAR-10 accuracy record of 2026-11-28/29 (docs/history.md, section 2): mean ± std over
    seeds, their number and the gap to the ANN on the same images, one row per method."""
    ann = data["ann"]  # the ANN's top-1 % on the same test images
    accs = _by_method_T((r["method"], r["T"], r["acc"]) for r in data["rows"])

    def cell(m: str, T: int) -> str:
        if (m, T) not in accs:
            return ""
        v = accs[(m, T)]
        mean, std = statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{mean:.2f} ± {std:.2f} (n={len(v)}, gap {ann - mean:.2f})"

    lines = ["| method | " + " | ".join(f"T={T}" for T in Ts) + " |", "|---|" + "---|" * len(Ts),
             f"| ANN | {ann:.2f} |" + " |" * (len(Ts) - 1)]
    lines += [f"| {m} | " + " | ".join(cell(m, T) for T in Ts) + " |" for m in methods]
    return "\n".join(lines)


def ablation(rows: list[dict], network: str, T: int, labels: Sequence[str]) -> str:
    """The low-latency ablation of 2026-11-30 (docs/history.md, section 6), from the rows of
    docs/data/lowlatency_ablation.jsonl: one network (its checkpoint's folder), one T, the rows by
    label, in that order."""
    by_label = {r["label"]: r for r in rows if r["T"] == T and r["ckpt"].split("/")[1] == network}
    lines = ["| method | settings | accuracy | agreement | logit MSE | calibration s |",
             "|---|---|---|---|---|---|"]
    for label in labels:
        r = by_label[label]
        settings = ", ".join(f"`{k}={v:g}`" for k, v in r["kw"].items()) or "defaults"
        lines.append(f"| `{r['method']}` | {settings} | {r['acc']:.2f} | {r['agree']:.2f} | "
                     f"{r['logit_mse']:.2f} | {r['calib_s']:.0f} |")
    return "\n".join(lines)


PEER_NAMES = {"spikingjelly": "SpikingJelly", "sinabs": "sinabs", "snntorch": "snnTorch", "norse": "Norse"}


def peers(data: dict) -> str:
    """`benchmarks/peers.py`: each peer running snncal's export against snncal, per network."""
    body = [[r["label"], PEER_NAMES.get(r["peer"], r["peer"]), r["images"], f"{r['snncal_acc']:.2f}",
             *((f"{r['peer_acc']:.2f}", f"{r['agreement']:.2f}", f"{r['time_ratio']:.2f}")
               if "error" not in r else ("failed: " + r["error"], "-", "-"))] for r in data["rows"]]
    return markdown_table(["network", "peer", "images", "snncal acc. (%)", "peer acc. (%)",
                           "agreement (%)", "peer time / snncal time"], body)


def suite(data: dict) -> str:
    """`benchmarks/suite.py`: `make test` on a fresh clone of each commit, pytest's time and the whole."""
    body = [[r["commit"], r["passed"], r["skipped"], f"{r['pytest_s']:.1f}", f"{r['make_test_s']:.1f}"]
            for r in data["rows"]]
    return markdown_table(["commit", "tests passed", "skipped", "pytest (s)",
                           "make test, venv included (s)"], body)


def _refusal(reason: str) -> str:
    """``cannot convert node 'n' (op) at path/file.py:47 `source`: ...`` -> ``op (file.py:47)``."""
    where = re.search(r"node '[^']+' \((.*?)\) at \S*?([^/\s]+:\d+)", reason)
    return f"{where[1]} ({where[2]})" if where else reason.split(":")[0]


def pytorchcv(data: dict) -> str:
    """`benchmarks/pytorchcv_zoo.py`: pytorchcv's classifiers by family: how many pass snncal's
    checks, how many of those were converted with random weights, and why the others are refused
    (each reason with its count of models)."""
    fams: dict[str, list[dict]] = {}
    for r in data["rows"]:
        if r["result"] != "not a classifier":
            fams.setdefault(r["family"], []).append(r)
    body = []
    for fam, rows in sorted(fams.items()):
        ok = [r for r in rows if r["result"] in ("converts", "checks pass")]
        why: dict[str, int] = {}
        for r in rows:
            if r not in ok:
                key = _refusal(r["reason"]) if r["result"] == "refused" else r["result"]
                why[key] = why.get(key, 0) + 1
        reasons = "; ".join(f"{k} ×{n}" if n > 1 else k for k, n in why.items()) or "-"
        tried = sum(r["result"] == "converts" for r in rows)
        body.append([fam, len(rows), len(ok), tried, len(rows) - len(ok), reasons])
    body.append(["**all**", *(sum(b[i] for b in body) for i in range(1, 5)), ""])
    return markdown_table(["pytorchcv family", "models tried", "convert", "converted here", "refused",
                           "what refuses them"], body)


def fidelity(data: dict) -> str:
    """`benchmarks/fidelity.py --model`: random-weight SNNs against their ANN and their ideal
    ClipFloor network (relative logit MSE, top-1 agreement %), and each neuron's total error
    (``layer_errors``: its rate against the ANN activation, relative to the activation's mean
    square) averaged over the neurons of each kind of layer."""
    body = []
    for r in data["rows"]:
        split = []
        for kind in ("depthwise", "pointwise", "other"):
            rel = [e["total"] / e["target"] for e in r.get("layers", []) if e["kind"] == kind and e["target"]]
            split.append(f"{statistics.fmean(rel):.3g} (n={len(rel)})" if rel else "-")
        body.append([r["model"], r["method"], r["T"], f"{r['ann_rel_mse']:.3g}", f"{r['ann_agreement']:.0f}",
                     f"{r['clipfloor_rel_mse']:.3g}", f"{r['clipfloor_agreement']:.0f}",
                     f"{r['clipfloor_vs_ann_rel_mse']:.3g}", *split])
    return markdown_table(["model", "method", "T", "SNN vs ANN: rel. MSE", "agreement %",
                           "SNN vs ClipFloor: rel. MSE", "agreement %", "ClipFloor vs ANN: rel. MSE",
                           "layer error: depthwise", "pointwise", "other"], body)


def training(data: dict) -> str:
    """`snncal train` on this machine: per run its recipe, epochs, wall time (all epochs, as they
    ran, and the median epoch) and test accuracy (on the whole test split, after the last epoch
    and the best of any epoch)."""
    body = []
    for r in data["runs"]:
        h, cfg = r["history"], r["recipe"]
        secs = sum(e["seconds"] for e in h)
        recipe = f"{cfg['augment']}, lr {cfg['lr']}, wd {cfg['weight_decay']}, batch {cfg['batch_size']}"
        best, median = max(e["test_acc"] for e in h), statistics.median(e["seconds"] for e in h)
        arch = r["arch"] + (f" (width {cfg['width']})" if cfg.get("width", 1.0) != 1.0 else "")
        body.append([arch, recipe, f"{len(h)}/{cfg['epochs']}", f"{secs / 60:.0f}", f"{median:.0f}",
                     f"{h[-1]['train_acc']:.2f}", f"{h[-1]['test_acc']:.2f}", f"{best:.2f}"])
    return markdown_table(["arch", "recipe", "epochs", "minutes", "median s / epoch", "train top-1 % (last)",
                           "test top-1 % (last)", "best"], body)


def layers(data: dict) -> str:
    """`benchmarks/fidelity.py --ckpt --layers`: a trained SNN's accuracy and where its error sits,
    by the kind of layer feeding each neuron: the mean over those neurons of the rate error against
    the ANN activation, its *input* part (from the spike trains it receives) and its *temporal*
    part (from firing them out in T steps), each relative to the activation's mean square; and
    the temporal part's sign, the mean excess of the rate over ClipFloor of its mean input,
    relative to the activation's root mean square (a column only for rows recorded with it)."""
    signed = all("excess" in e for r in data["rows"] for e in r.get("layers", []))
    body = []
    for r in data["rows"]:
        for kind in ("depthwise", "pointwise", "other"):
            errs = [e for e in r.get("layers", []) if e["kind"] == kind and e["target"]]
            if not errs:
                continue
            rel = [statistics.fmean(e[k] / e["target"] for e in errs) for k in ("total", "input", "temporal")]
            cells = [f"{v:.3g}" for v in rel]
            if signed:
                cells.append(f"{statistics.fmean(e['excess'] / e['target'] ** 0.5 for e in errs):+.3g}")
            body.append([r["model"], r["method"], r["T"], f"{r['ann_acc']:.2f}", f"{r['acc']:.2f}", kind,
                         len(errs), *cells])
    return markdown_table(["checkpoint", "method", "T", "ANN %", "SNN %", "neurons fed by", "n",
                           "rel. error: total", "input", "temporal", *(["excess"] if signed else [])], body)


def thresholds(data: dict) -> str:
    """`benchmarks/fidelity.py --ckpt --layers`: two threshold rules side by side, layer by layer:
    each row's (method's) mean threshold and its neuron's rate error relative to the activation's
    mean square, split into the part received (*input*) and the part its own spike trains add."""
    rows = data["rows"]
    if not rows or any("threshold" not in e for r in rows for e in r.get("layers", [{}])):
        raise SystemExit("tables.py thresholds: every row needs its layers' thresholds: record it with "
                         "`benchmarks/fidelity.py --ckpt ... --layers` (since commit aca0622)")
    names = [e["name"] for e in rows[0]["layers"]]
    by = [{e["name"]: e for e in r["layers"]} for r in rows]
    body = [[i + 1, name, *(c for b in by for c in (f"{b[name]['threshold']:.3g}",
                                                      f"{b[name]['input'] / b[name]['target']:.3g}",
                                                      f"{b[name]['temporal'] / b[name]['target']:.3g}"))]
            for i, name in enumerate(names)]
    head = [h for r in rows for h in (f"{r['method']} Vth", "input", "temporal")]
    return markdown_table(["#", "neuron", *head], body)


def calibrated(data: dict) -> str:
    """`benchmarks/fidelity.py --ckpt`: a trained network's SNN against its ANN, one row per method
    and setting: accuracy, agreement of the predictions, logit MSE and calibration seconds."""
    body = [[r["model"], r["method"], ", ".join(f"{k}={v}" for k, v in r.get("set", {}).items()) or "-",
             r["T"], r["images"], f"{r['ann_acc']:.2f}", f"{r['acc']:.2f}", f"{r['agreement']:.2f}",
             f"{r['logit_mse']:.2f}", f"{r['seconds']:.0f}"] for r in data["rows"]]
    return markdown_table(["checkpoint", "method", "settings", "T", "images", "ANN %", "SNN %",
                           "agreement %", "logit MSE", "calibration s"], body)


def spread(data: dict) -> str:
    """How accuracy moves with the calibration sample alone: per method and T, over the seeds of a
    sweep (each seed draws other calibration images; the test images are the same)."""
    accs = _by_method_T((r["method"], r["T"], r["acc"]) for r in data["rows"])
    ann, body = data["ann"]["acc"], []
    for (m, T), v in accs.items():
        mean, std = statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0
        body.append([m, T, len(v), f"{mean:.2f}", f"{std:.2f}", f"{min(v):.2f}", f"{max(v):.2f}",
                     f"{max(v) - min(v):.2f}", f"{ann - mean:.2f}"])
    header = ["method", "T", "seeds", "mean", "std", "min", "max", "max - min", "gap to the ANN"]
    return markdown_table(header, body)


def readout(data: dict) -> str:
    """`benchmarks/readout.py`: a delayed readout at low T, the output averaged over the last
    ``T - d`` of ``T`` steps: accuracy, its gap to the ANN, agreement with the ANN and logit MSE."""
    body = [[r["method"], r["T"], r["delay"], f"{r['acc']:.2f}", f"{r['ann_acc'] - r['acc']:.2f}",
             f"{r['agreement']:.2f}", f"{r['logit_mse']:.2f}"] for r in data["rows"]]
    return markdown_table(["method", "T", "delay d", "accuracy %", "gap", "agreement %", "logit MSE"], body)


PRINTERS = {"quickstart": quickstart, "speed": speed, "memory": memory, "calibration": calibration,
            "nir": nir, "peers": peers, "suite": suite, "pytorchcv": pytorchcv,
            "fidelity": fidelity, "spread": spread, "layers": layers, "training": training,
            "calibrated": calibrated, "readout": readout, "thresholds": thresholds}


def _table9_rows(args: argparse.Namespace) -> tuple[dict, list[Row], float, str]:
    """The results file, its rows of ``--methods`` and ``--T``, the ANN's accuracy and the
    architecture (``--arch`` or the file's)."""
    data = _read(args.results)
    rows = [Row(**r) for r in data["rows"] if r["method"] in args.methods and r["T"] in args.T]
    if not rows:
        raise SystemExit(f"tables.py {args.table}: no rows of {args.results} have a method of "
                         f"{' '.join(args.methods)} and a T of {' '.join(map(str, args.T))}")
    arch = args.arch or data["ann"].get("arch") or data["protocol"].get("arch", "")
    return data, rows, data["ann"]["acc"], arch


def _groups(rows: list[Row], methods: Sequence[str], Ts: Sequence[int]
            ) -> Iterator[tuple[str, int, list[Row]]]:
    """``(method, T, its rows over seeds)`` in table order, for each pair that has rows."""
    for m in methods:
        for T in Ts:
            runs = [r for r in rows if (r.method, r.T) == (m, T)]
            if runs:
                yield m, T, runs


def table9(args: argparse.Namespace) -> str:
    """One table of `reproduce` (``--part``): accuracy (mean ± std over seeds, the paper's rows
    beside), the gap to the ANN, the conversion seconds, its seconds by calibration step, or
    accuracy with the agreement and logit MSE against the ANN."""
    _, rows, ann, arch = _table9_rows(args)
    if args.part == "seconds":
        return seconds_table(rows, args.methods, args.T).rstrip("\n")
    if args.part == "gap":
        return _gap_table(rows, ann, args.methods, args.T)
    if args.part == "steps":
        return _steps_table(rows, args.methods, args.T)
    if args.part == "fidelity":
        return _fidelity_table(rows, ann, args.methods, args.T)
    return accuracy_table(rows, ann, args.methods, args.T, network=NETWORKS.get(arch)).rstrip("\n")


def _steps_table(rows: list[Row], methods: Sequence[str], Ts: Sequence[int]) -> str:
    """Calibration seconds by step (``Row.extra["step_seconds"]``) and in all, the median over
    seeds, per method and T: where conversion time goes."""
    timed = [r for r in rows if r.extra.get("step_seconds")]
    steps = list(dict.fromkeys(k for r in timed for k in r.extra["step_seconds"]))
    body = []
    for m, T, runs in _groups(timed, methods, Ts):
        cell = [statistics.median(r.extra["step_seconds"].get(k, 0.0) for r in runs) for k in steps]
        body.append([m, T, len(runs), *(f"{v:.1f}" if v else "-" for v in cell),
                     f"{statistics.median(r.convert_seconds for r in runs):.0f}"])
    return markdown_table(["Method", "T", "seeds", *steps, "conversion s"], body)


def _fidelity_table(rows: list[Row], ann: float, methods: Sequence[str], Ts: Sequence[int]) -> str:
    """Per method and T, the mean over seeds of accuracy, its gap to the ANN, the agreement with
    the ANN's predictions and the logit MSE, with the median conversion seconds: what each
    method's steps buy, and at what cost."""
    body = []
    for m, T, runs in _groups(rows, methods, Ts):
        mean = {k: statistics.fmean(getattr(r, k) for r in runs) for k in ("acc", "agreement", "logit_mse")}
        body.append([m, T, len(runs), f"{mean['acc']:.2f}", f"{ann - mean['acc']:.2f}",
                     f"{mean['agreement']:.2f}", f"{mean['logit_mse']:.2f}",
                     f"{statistics.median(r.convert_seconds for r in runs):.0f}"])
    return markdown_table(["Method", "T", "seeds", "SNN %", "gap", "agreement %", "logit MSE",
                           "conversion s"], body)


def _gap_table(rows: list[Row], ann: float, methods: Sequence[str], Ts: Sequence[int]) -> str:
    """ANN minus the mean SNN accuracy over seeds, points."""
    means = summarize(rows)
    body = [[m, *(f"{ann - means[(m, T)][0]:.2f}" if (m, T) in means else "-" for T in Ts)] for m in methods]
    return markdown_table(["Method", *(f"T={T}" for T in Ts)], body)


def reproduce(args: argparse.Namespace) -> str:
    """Table 9, the gaps and the conversion seconds of any rows of a sweep / reproduce results file."""
    data, rows, ann, arch = _table9_rows(args)
    out = [f"ANN {ann:.2f} % on {data['protocol']['test_images']}\n",
           accuracy_table(rows, ann, args.methods, args.T, network=NETWORKS.get(arch)),
           "Gap (ANN - SNN, points):\n", _gap_table(rows, ann, args.methods, args.T),
           "Conversion seconds (calibration included):\n", seconds_table(rows, args.methods, args.T)]
    if args.plot:
        from snncal.app import plots

        title = f"{arch or Path(args.results).stem}, {data['protocol']['test_images']}"
        plots.plot_accuracy(rows, args.plot, ann, title=title, methods=args.methods)
        out.append(f"wrote {args.plot}")
    return "\n".join(out)


MARKER = re.compile(r"^<!-- table: python benchmarks/tables\.py (.+?) -->$")


def update(paths: Sequence[str]) -> str:
    """Rewrite each marked table of the docs ``paths`` from its data file; which docs changed."""
    changed = []
    for path in map(Path, paths):
        lines, out, i = path.read_text().splitlines(), [], 0
        while i < len(lines):
            out.append(lines[i])
            marker = MARKER.match(lines[i])
            i += 1
            if marker:
                while i < len(lines) and lines[i].startswith("|"):
                    i += 1
                out += render(shlex.split(marker[1])).splitlines()
        text = "\n".join(out) + "\n"
        if text != path.read_text():
            path.write_text(text)
            changed.append(str(path))
    return "updated: " + (", ".join(changed) or "nothing")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="table", required=True)
    for name, fn in PRINTERS.items():
        sub.add_parser(name, help=_help(fn)).add_argument("data", help="its data file")
    sub.choices["quickstart"].add_argument("--plot", help="also write the plot here (PNG)")
    a = sub.add_parser("accuracy", help=_help(accuracy))
    a.add_argument("data", help="its data file (docs/data/accuracy_*.json)")
    a.add_argument("--methods", nargs="+", required=True)
    a.add_argument("--T", nargs="+", type=int, required=True)
    b = sub.add_parser("ablation", help=_help(ablation))
    b.add_argument("data", help="docs/data/lowlatency_ablation.jsonl")
    b.add_argument("--network", required=True, help="the checkpoint's folder, e.g. resnet20_he_cifar10")
    b.add_argument("--T", type=int, required=True)
    b.add_argument("--labels", nargs="+", required=True)
    for name, fn in (("reproduce", reproduce), ("table9", table9)):
        r = sub.add_parser(name, help=_help(fn))
        r.add_argument("results", help="a reproduce.json / sweep.json, or a docs/data/ file of collect.py")
        r.add_argument("--methods", nargs="+", required=True)
        r.add_argument("--T", nargs="+", type=int, required=True)
        r.add_argument("--arch", help="the zoo architecture, for the paper's rows (default: the file's)")
    sub.choices["reproduce"].add_argument("--plot", help="write accuracy against T here (PNG)")
    parts = ("accuracy", "gap", "seconds", "steps", "fidelity")
    sub.choices["table9"].add_argument("--part", choices=parts, default="accuracy")
    u = sub.add_parser("update", help=_help(update))
    u.add_argument("docs", nargs="+", help="Markdown files")
    return p


def render(argv: Sequence[str]) -> str:
    """What ``python benchmarks/tables.py ARGV`` prints, without the final newline."""
    args = parser().parse_args(list(argv))
    try:
        return _render(args)
    except (KeyError, TypeError) as err:  # a data file of another kind than the printer reads
        source = getattr(args, "data", None) or getattr(args, "results", "")
        raise SystemExit(f"tables.py {args.table}: {source} is not a file this table is printed from "
                         f"(no field {err})") from err


def _render(args: argparse.Namespace) -> str:
    if args.table == "reproduce":
        return reproduce(args).rstrip("\n")
    if args.table == "table9":
        return table9(args)
    if args.table == "update":
        return update(args.docs)
    if args.table == "ablation":
        rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
        return ablation(rows, args.network, args.T, args.labels)
    data = _read(args.data)
    if args.table == "accuracy":
        return accuracy(data, args.methods, args.T)
    if getattr(args, "plot", None):
        quickstart_plot(data, args.plot)
    return PRINTERS[args.table](data).rstrip("\n")


def main() -> None:
    print(render(sys.argv[1:]))


if __name__ == "__main__":
    main()
