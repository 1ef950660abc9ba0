"""Every ``snncal`` subcommand on tiny synthetic data sets (no network, no Debian package)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from tiny import FAST, images

import snncal.ann.data.datasets as ds
from snncal.app.cli import main
from snncal.app.experiment import Experiment
from snncal.core.export import load


def _grid_args(cmd: str, ann: Path, fmnist: Path, out: Path, *extra: str) -> list[str]:
    return [cmd, "--checkpoint", str(ann / "last"), "--data-dir", str(fmnist), "--test-images", "40",
            "--num-images", "32", "--batch-size", "16", "--out", str(out), *FAST, *extra]


def test_train_writes_checkpoints(ann, capsys) -> None:
    assert (ann / "last.safetensors").exists() and (ann / "best.json").exists()
    summary = json.loads((ann / "summary.json").read_text())
    assert summary["arch"] == "cnn_small" and summary["epochs"] == 1
    meta = json.loads((ann / "last.json").read_text())
    assert meta["dataset"] == "fashion_mnist" and meta["width"] == 0.5


def test_convert_then_evaluate(ann, fmnist, tmp_path, capsys) -> None:
    out = tmp_path / "snn"
    assert main(["convert", "--checkpoint", str(ann / "last"), "--data-dir", str(fmnist), "--method",
                 "light", "--T", "8", "--num-images", "64", "--per-channel", "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "method=light, T=8" in text
    assert text.count("| net.features.") == 3  # one calibration row per IF layer
    meta = json.loads((out / "snn.json").read_text())["meta"]
    assert meta["config"]["method"] == "light" and meta["config"]["per_channel"] is True
    assert meta["config"]["seed"] == 0 and meta["input_shape"] == [1, 28, 28]
    snn = load(out / "snn")
    assert snn.T == 8 and len(snn.neurons()) == 3

    nir = pytest.importorskip("nir")
    assert main(["export", "--snn", str(out / "snn"), "--nir", str(tmp_path / "sj.nir"),
                 "--target", "spikingjelly"]) == 0
    assert "for spikingjelly (spikingjelly.activation_based" in capsys.readouterr().out
    graph = nir.read(tmp_path / "sj.nir")
    neurons = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert len(neurons) == 3 and all((n.v_threshold == 1).all() for n in neurons)  # folded
    assert not any(isinstance(n, nir.Scale) for n in graph.nodes.values())

    ev = tmp_path / "eval"
    assert main(["evaluate", "--snn", str(out / "snn"), "--data-dir", str(fmnist), "--T", "4", "8",
                 "--test-images", "30", "--rate-images", "20", "--stats", "--out", str(ev), *FAST]) == 0
    text = capsys.readouterr().out
    assert "T=4 |" in text and "spikes / neuron / step" in text and "SOPs" in text
    result = json.loads((ev / "evaluate.json").read_text())
    evaluation = result["evaluation"]
    assert set(evaluation["snn"]) == {"4", "8"} and evaluation["images"] == 30
    assert evaluation["ann"] is not None  # found through the ANN checkpoint recorded in the SNN
    assert 0 <= evaluation["agreement"]["8"] <= 100 and evaluation["logit_mse"]["8"] >= 0
    assert [r["name"] for r in result["rates"]] == list(snn.neurons())
    assert all(0 <= r["rate"] <= 1 for r in result["rates"])
    assert result["stats"]["sops_per_image"] > 0 and len(result["stats"]["layers"]) == 3
    assert (ev / "firing_rates.png").stat().st_size > 10_000 and (ev / "layer_stats.png").exists()


def _table(text: str) -> list[list[str]]:
    """The cells of the first Markdown table in ``text`` (rule lines left out)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = [line for line in lines[start:end] if "---" not in line]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]


def _rows(path: Path) -> list[tuple]:
    return [(r["method"], r["T"], r["seed"]) for r in json.loads(path.read_text())["rows"]]


def test_sweep_resumes_where_it_stopped(ann, fmnist, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "sweep"
    args = _grid_args("sweep", ann, fmnist, out, "--methods", "none", "light", "--T", "4", "8",
                      "--seeds", "0", "1")
    calls: list[tuple] = []
    interrupt_at = [3]  # the fourth row is interrupted (Ctrl-C / kill) while it runs
    real = Experiment.run_row

    def counted(self, method, T, seed):
        if len(calls) == interrupt_at[0]:
            raise KeyboardInterrupt
        calls.append((method, T, seed))
        return real(self, method, T, seed)

    monkeypatch.setattr(Experiment, "run_row", counted)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert _rows(out / "sweep.json") == [("none", 4, 0), ("none", 8, 0), ("light", 4, 0)]
    calls.clear()
    interrupt_at[0] = -1
    assert main(args) == 0
    assert len(calls) == 5  # only the rows that were not done
    rows = _rows(out / "sweep.json")
    assert sorted(rows) == sorted((m, T, s) for m in ("none", "light") for T in (4, 8) for s in (0, 1))

    calls.clear()
    capsys.readouterr()
    assert main(args) == 0
    assert calls == []  # all done: nothing re-runs
    capsys_text = capsys.readouterr().out
    table = _table(capsys_text)
    assert table[0] == ["Method", "ANN", "T=4", "T=8"]
    assert [r[0] for r in table[1:]] == ["none", "light"]
    assert all(re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", cell) for r in table[1:] for cell in r[2:])
    seconds = _table(capsys_text.split("Conversion seconds")[1])
    assert seconds[0] == ["Method", "T=4", "T=8"] and all(float(c) >= 0 for r in seconds[1:] for c in r[1:])
    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and {"method", "T", "seed", "acc"} <= set(table[0])
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["config"]["methods"] == ["none", "light"] and saved["config"]["num_images"] == 32
    assert (out / "sweep.png").exists() and (out / "sweep.md").read_text().startswith("# Sweep")

    assert main([*args, "--cache-gb", "0"]) == 0 and calls == []  # memory, not a protocol: resumes
    # another protocol (other calibration set size) must not mix into the same file
    capsys.readouterr()
    assert main([*args, "--num-images", "16"]) == 2
    err = capsys.readouterr().err  # one line naming what differs, nothing else
    assert "another protocol (convert.num_images: file 32 vs now 16)" in err and err.count("\n") == 1


def test_reproduce_writes_the_paper_table(ann, fmnist, tmp_path, capsys) -> None:
    out = tmp_path / "repro"
    assert main(_grid_args("reproduce", ann, fmnist, out, "--methods", "none", "light", "--T", "4", "16",
                           "--num-seeds", "2")) == 0
    md = (out / "reproduce.md").read_text()
    assert md.startswith("# Table 9 protocol: cnn_small on fashion_mnist")
    table = _table(md)
    assert table[0] == ["Method", "Use BN", "ANN", "T=4", "T=16"]
    assert [r[:2] for r in table[1:]] == [["none", "yes"], ["light", "yes"]]
    assert all("±" in cell for r in table[1:] for cell in r[3:])
    assert len({r[2] for r in table[1:]}) == 1  # one ANN accuracy
    saved = json.loads((out / "reproduce.json").read_text())
    assert len(saved["rows"]) == 8 and {r["seed"] for r in saved["rows"]} == {0, 1}
    assert "acc" in saved["ann"]
    assert (out / "reproduce.csv").read_text().count("\n") == 9


def test_quickstart_on_tiny_fashion_mnist(fmnist, tmp_path, monkeypatch, capsys) -> None:
    """The default data path (Fashion-MNIST at its default root), pointed at the tiny copy."""
    monkeypatch.setitem(ds.DATASETS, "fashion_mnist",
                        ds.DATASETS["fashion_mnist"].__class__(
                            **{**ds.DATASETS["fashion_mnist"].__dict__, "default_root": str(fmnist)}))
    out = tmp_path / "qs"
    args = ["quickstart", "--epochs", "1", "--batch-size", "50", "--T", "4", "8", "--test-images", "30",
            "--calib-images", "32", "--methods", "none", "light", "--out", str(out), *FAST]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "30 of 100 test images (indices i * 100 // 30)" in text
    table = _table(text)
    assert table[0] == ["Method", "ANN", "T=4", "T=8"] and [r[0] for r in table[1:]] == ["none", "light"]
    for name in ("results.json", "results.csv", "results.md", "results.png", "firing_rates.png",
                 "snn_advanced_T32.safetensors", "ann/last.safetensors"):
        assert (out / name).exists(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["quickstart"]["test_images"] == 30
    assert saved["config"]["train"]["arch"] == "cnn_small"
    assert len(saved["rows"]) == 4 and len(saved["extra"]["rates"]) == 3
    # a rerun resumes everything: no training epoch, no sweep row
    def fail(*args, **kw):
        raise AssertionError("a finished row ran again")

    monkeypatch.setattr(Experiment, "run_row", fail)
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["rows"] == saved["rows"]
    assert len(json.loads((out / "ann" / "history.json").read_text())) == 1


def test_quickstart_on_a_cifar10_image_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SNNCAL_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cifar10"
    for split, n in (("train", 60), ("test", 20)):
        pixels, labels = images(n, 2, 32, 3)
        for i, (img, k) in enumerate(zip(pixels, labels)):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i}.png")
    out = tmp_path / "qs"
    assert main(["quickstart", "--data", str(root), "--epochs", "1", "--batch-size", "20", "--T", "4",
                 "--test-images", "10", "--calib-images", "16", "--methods", "light", "--out", str(out),
                 *FAST]) == 0
    assert "CIFAR-10" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["dataset"] == "cifar10" and saved["rows"][0]["test_images"] == 10


def test_errors_are_short_messages(tmp_path, capsys) -> None:
    assert main(["convert", "--checkpoint", str(tmp_path / "missing"), *FAST]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep"])  # --checkpoint is required
