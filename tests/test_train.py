"""The training recipe on tiny synthetic data: it learns, and resuming after a kill is exact."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import snncal.ann.train as T
from snncal.ann import checkpoint as ck
from snncal.ann.data import TensorImageDataset


def _synthetic(n: int, seed: int, size: int = 16) -> TensorImageDataset:
    """Ten classes; class k has a bright 4x4 patch at a class-specific place, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 64, (n, 3, size, size), generator=g, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        r, c = divmod(k, 4)
        images[i, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 255
    return TensorImageDataset(images, labels)


def _config(tmp_path: Path, name: str, **kw) -> T.TrainConfig:
    base = dict(
        arch="resnet20_he", width=0.25, dataset="cifar10", out_dir=str(tmp_path / name),
        epochs=2, batch_size=16, augment="none", threads=1, progress=False, deterministic=True,
    )  # fmt: skip
    return T.TrainConfig(**{**base, **kw})


def test_resolve_fills_the_papers_defaults() -> None:
    bn = T.TrainConfig().resolve(has_bn=True)
    assert (bn.lr, bn.weight_decay, bn.epochs, bn.label_smoothing, bn.ema_decay) == (
        0.1, 5e-4, 300, 0.0, 0.0,
    )  # fmt: skip
    plain = T.TrainConfig(arch="vgg16").resolve(has_bn=False)
    assert (plain.lr, plain.weight_decay) == (0.005, 1e-4)
    imnet = T.TrainConfig(dataset="imagenet").resolve(has_bn=True)
    assert (imnet.epochs, imnet.weight_decay, imnet.label_smoothing, imnet.ema_decay) == (
        120, 1e-4, 0.1, 0.999,
    )  # fmt: skip
    assert T.TrainConfig(lr=0.3).resolve(True).lr == 0.3


def test_tiny_training_learns(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "run", epochs=4, lr=0.05)
    out = T.train(cfg, _synthetic(160, 0), _synthetic(60, 1))
    hist = out["history"]
    assert len(hist) == 4 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert out["test_acc"] > 30  # chance is 10%
    model, meta = ck.load_checkpoint(out["checkpoint"])
    assert meta["epoch"] == 4 and meta["recipe"]["lr"] == 0.05
    assert meta["normalize"]["mean"][0] == pytest.approx(0.4914)
    test = _synthetic(60, 1)
    x = torch.stack([test[i][0] for i in range(60)])  # raw [0, 1] images
    acc = 100 * float((model(x).argmax(1) == test.targets).float().mean())
    assert acc == pytest.approx(out["test_acc"], abs=1e-6)
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == hist


def test_resume_after_kill_is_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(ema_decay=0.9, label_smoothing=0.1, augment="basic")
    train_set, test_set = _synthetic(64, 0), _synthetic(20, 1)
    whole = T.train(_config(tmp_path, "whole", **kw), train_set, test_set)

    original = T.train_one_epoch
    calls = {"n": 0}

    def killed_in_epoch_two(model, loader, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] < 2:
            return original(model, loader, *args, **kwargs)

        def two_batches_then_die():
            for i, batch in enumerate(loader):
                if i == 2:
                    raise KeyboardInterrupt  # stands for kill -9: nothing after this is saved
                yield batch

        return original(model, two_batches_then_die(), *args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        T.train(_config(tmp_path, "killed", **kw), train_set, test_set)
    monkeypatch.setattr(T, "train_one_epoch", original)
    state = torch.load(tmp_path / "killed" / "state.pt", weights_only=False)
    assert state["epoch"] == 1
    resumed = T.train(_config(tmp_path, "killed", **kw), train_set, test_set)

    a, meta_a = ck.read_checkpoint(whole["checkpoint"])
    b, _ = ck.read_checkpoint(resumed["checkpoint"])
    assert meta_a["weights"] == "ema" and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in whole["history"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in resumed["history"]
    ]


def test_finished_run_is_not_retrained_and_changed_settings_refuse(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "run", epochs=1)
    data = (_synthetic(32, 0), _synthetic(10, 1))
    first = T.train(cfg, *data)
    again = T.train(cfg, *data)
    assert again["history"] == first["history"]
    with pytest.raises(ValueError, match="batch_size: saved 16 vs now 8"):
        T.train(dataclasses.replace(cfg, batch_size=8), *data)
    fresh = T.train(dataclasses.replace(cfg, batch_size=8, resume=False), *data)
    assert fresh["config"]["batch_size"] == 8


def test_global_torch_flags_are_restored(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    T.train(_config(tmp_path, "run", epochs=1, threads=1), _synthetic(16, 0), _synthetic(10, 1))
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_train_command_maps_options_onto_the_config_and_trains(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``snncal train``: one option per TrainConfig field (one mechanism with the conversion options)."""
    from snncal.app.cli import build_parser, main
    from snncal.app.options import from_args

    args = build_parser().parse_args(["train", "--arch", "vgg16", "--epochs", "3", "--lr", "0.01",
                                      "--no-amp", "--width", "0.5"])
    cfg = from_args(T.TrainConfig, args, out_dir=args.out)
    assert (cfg.arch, cfg.epochs, cfg.lr, cfg.amp, cfg.width) == ("vgg16", 3, 0.01, False, 0.5)
    assert cfg.weight_decay is None and cfg.data_dir is None

    monkeypatch.setenv("SNNCAL_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(10):
            (tmp_path / "d" / split / f"c{c}").mkdir(parents=True)
            for i in range(2):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / "d" / split / f"c{c}" / f"{i}.png")
    out = tmp_path / "out"
    argv = ["train", "--arch", "resnet20_he", "--width", "0.125", "--data-dir", str(tmp_path / "d"),
            "--epochs", "1", "--batch-size", "8", "--out", str(out), "--no-progress",
            "--augment", "basic", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and (out / "last.safetensors").exists()
    assert (out / "best.json").exists() and (out / "train.log").exists()


def test_warmup_ramps_the_learning_rate_then_decays_it() -> None:
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler, _ = T._optimizer(model, T.TrainConfig(epochs=3, warmup_epochs=1).resolve(True), 10)
    lrs = []
    for _ in range(30):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[10] == pytest.approx(0.1)
    assert lrs[:11] == sorted(lrs[:11]) and lrs[10:] == sorted(lrs[10:], reverse=True)


def test_a_training_process_killed_with_sigkill_resumes_to_the_uninterrupted_result(
    fmnist: Path, tmp_path: Path
) -> None:
    """``kill -9`` of a real ``snncal train`` process between epochs, then the same command
    again: the checkpoint and the history are those of a run that was never interrupted."""
    from snncal.app.cli import main

    def args(out: Path) -> list[str]:
        return ["train", "--arch", "cnn_small", "--width", "0.25", "--dataset", "fashion_mnist",
                "--data-dir", str(fmnist), "--epochs", "6", "--batch-size", "50", "--augment",
                "basic", "--threads", "1", "--no-progress", "--out", str(out)]

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "snncal", *args(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (killed / "history.json").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # as soon as the first epoch is saved
    assert proc.wait() == -signal.SIGKILL
    epochs_before = len(json.loads((killed / "history.json").read_text()))
    assert 1 <= epochs_before < 6
    assert main(args(killed)) == 0
    assert main(args(tmp_path / "whole")) == 0

    a, _ = ck.read_checkpoint(tmp_path / "whole" / "last")
    b, _ = ck.read_checkpoint(killed / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    whole, resumed = ([{k: v for k, v in r.items() if k != "seconds"} for r in
                       json.loads((d / "history.json").read_text())] for d in (tmp_path / "whole", killed))
    assert len(whole) == 6 and resumed == whole
