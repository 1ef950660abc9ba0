"""Atomic writes and checkpoints: round trip, raw-image classification, mismatch errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import snncal.ann.models as zoo
from snncal.ann import checkpoint as ck
from snncal.core import files

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _meta(**kw) -> dict:
    return {
        "arch": "resnet20_he",
        "num_classes": 10,
        "width": 0.25,
        "model_kwargs": {},
        "normalize": {"mean": list(MEAN), "std": list(STD)},
        **kw,
    }


def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    files.atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    files.atomic_write_json(tmp_path / "a" / "y.json", {"b": 1})
    files.atomic_write_bytes(tmp_path / "a" / "x.txt", b"again")
    assert (tmp_path / "a" / "x.txt").read_bytes() == b"again"
    assert json.loads((tmp_path / "a" / "y.json").read_text()) == {"b": 1}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.txt", "y.json"]


def test_checkpoint_round_trip_classifies_raw_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create("resnet20_he", 10, 0.25, mean=MEAN, std=STD)
    model(torch.rand(8, 3, 32, 32))  # move BN running stats away from their init
    model.eval()
    path = ck.save_checkpoint(tmp_path / "ck", model, _meta(test_acc=12.5))
    assert path == tmp_path / "ck.safetensors"
    assert json.loads((tmp_path / "ck.json").read_text())["test_acc"] == 12.5
    for name in ("ck", "ck.safetensors", "ck.json"):
        loaded, meta = ck.load_checkpoint(tmp_path / name)
        assert meta["format"] == ck.FORMAT and not loaded.training
        x = torch.rand(4, 3, 32, 32)
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_checkpoint_mismatch_errors(tmp_path: Path) -> None:
    model = zoo.create("resnet20_he", 10, 0.25, mean=MEAN, std=STD)
    ck.save_checkpoint(tmp_path / "ck", model, _meta())
    with pytest.raises(ValueError, match="holds arch 'resnet20_he', not 'vgg16_bn'"):
        ck.load_checkpoint(tmp_path / "ck", arch="vgg16_bn")
    with pytest.raises(ValueError, match="has 10 classes, not 100"):
        ck.load_checkpoint(tmp_path / "ck", num_classes=100)
    ck.save_checkpoint(tmp_path / "lie", model, _meta(num_classes=100))
    with pytest.raises(ValueError, match=r"does not match.*num_classes=100.*net\.fc\.weight"):
        ck.load_checkpoint(tmp_path / "lie")
    with pytest.raises(ValueError, match="'arch'"):
        ck.save_checkpoint(tmp_path / "x", model, {})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.load_checkpoint(tmp_path / "missing")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="no snncal metadata"):
        ck.load_checkpoint(tmp_path / "foreign")


def test_read_checkpoint_for_own_models(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    ck.save_checkpoint(tmp_path / "own", model, {"arch": "my_linear"})
    state, meta = ck.read_checkpoint(tmp_path / "own.safetensors")
    assert meta["arch"] == "my_linear"
    torch.testing.assert_close(state["weight"], model.weight.detach())
    with pytest.raises(ValueError, match="unknown model 'my_linear'"):
        ck.load_checkpoint(tmp_path / "own")


def test_atomic_write_uses_normal_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        path = files.atomic_write_text(tmp_path / "p.txt", "x")
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o600)
        files.atomic_write_text(path, "y")
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)
