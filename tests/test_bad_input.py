"""Bad input, careless or hostile: every case gets one clear line (exit code 2 on the command line),
before any expensive work, and no file a user can place runs code."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from nets import Plain
from safetensors.torch import save as st_save
from tiny import FAST

import snncal
import snncal.ann.models as zoo
from snncal.ann.checkpoint import save_checkpoint
from snncal.app.cli import main


class Payload:
    """A pickle that creates ``marker`` when it is unpickled: code run from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def files(ann, tmp_path_factory) -> dict[str, Path]:
    """Damaged and hostile files, named by what is wrong with them."""
    root = tmp_path_factory.mktemp("bad")
    good = (ann / "last.safetensors").read_bytes()
    (root / "empty.safetensors").write_bytes(b"")
    (root / "truncated.safetensors").write_bytes(good[:100])
    (root / "random.safetensors").write_bytes(os.urandom(4096))
    bad_json = st_save({"w": torch.zeros(1)}, metadata={"snncal": "{oops"})
    (root / "badjson.safetensors").write_bytes(bad_json)
    meta = json.loads((ann / "last.json").read_text())
    header = json.dumps({k: v for k, v in meta.items() if k != "arch"})
    (root / "noarch.safetensors").write_bytes(st_save({"w": torch.zeros(1)}, metadata={"snncal": header}))
    snn = snncal.convert(Plain(), torch.rand(8, 3, 8, 8), T=4)
    snncal.save(snn, root / "snn")
    data = json.loads((root / "snn.json").read_text())
    data["snn"]["T"] = 0
    tensors = {f"graph.{k}": v for k, v in snn.graph.state_dict().items()}
    (root / "t0.safetensors").write_bytes(st_save(tensors, metadata={"snncal": json.dumps(data)}))
    (root / "a_file").write_text("not a folder")
    rgb = zoo.create("cnn_small", 10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    save_checkpoint(root / "rgb", rgb, {**meta, "model_kwargs": {}, "dataset": "cifar10",
                                        "normalize": {"mean": [0.5] * 3, "std": [0.25] * 3},
                                        "input_size": [3, 32, 32], "width": 1.0})
    return {p.stem: p for p in root.iterdir()} | {"root": root}


# (what is passed, the command line with {placeholders}, the one line it must print)
CLI_CASES = [
    ("empty checkpoint", "convert --checkpoint {empty}", r"empty\.safetensors: not a safetensors file"),
    ("truncated checkpoint", "convert --checkpoint {truncated}", r"truncated\.safetensors: truncated"),
    ("random checkpoint", "convert --checkpoint {random}", r"random\.safetensors: (truncated|corrupt)"),
    ("bad JSON metadata", "convert --checkpoint {badjson}",
     r"badjson\.safetensors: corrupt snncal metadata"),
    ("metadata without arch", "convert --checkpoint {noarch}", r"noarch.* is not an ANN checkpoint"),
    ("T = 0 in an SNN file", "evaluate --snn {t0} --data-dir {data}", r"t0\.safetensors: T = 0"),
    ("no calibration images", "convert --checkpoint {ckpt} --num-images 0",
     r"num_images must be >= 1, got 0"),
    ("negative calibration images", "convert --checkpoint {ckpt} --num-images -5",
     r"num_images must be >= 1, got -5"),
    ("batch size 0", "convert --checkpoint {ckpt} --batch-size 0", r"batch_size must be >= 1, got 0"),
    ("no test images", "evaluate --snn {snn} --test-images 0", r"argument --test-images: must be >= 1"),
    ("convert evaluates nothing", "convert --checkpoint {ckpt} --test-images 10",
     r"unrecognized arguments: --test-images 10"),
    ("nor loads test batches", "convert --checkpoint {ckpt} --workers 2 --eval-batch-size 5",
     r"unrecognized arguments: --workers 2 --eval-batch-size 5"),
    ("percentile 150", "convert --checkpoint {ckpt} --threshold percentile --percentile 150",
     r"percentile must be a number in \(0, 100\], got 150"),
    ("training batch size 0", "train --batch-size 0 --out {root}/t", r"batch_size must be >= 1, got 0"),
    ("zero epochs", "train --epochs 0 --out {root}/t", r"epochs must be >= 1, got 0"),
    ("zero seeds", "reproduce --checkpoint {ckpt} --num-seeds 0", r"argument --num-seeds: must be >= 1"),
    ("unknown device", "convert --checkpoint {ckpt} --device tpu9", r"unknown device 'tpu9'"),
    ("T of 0", "evaluate --snn {snn} --T 0 8", r"argument --T: must be >= 1, got 0"),
    ("unknown method", "sweep --checkpoint {ckpt} --data-dir {data} --methods none bogus --out {root}/s",
     r"unknown method 'bogus'"),
    ("T of 0 in a sweep", "sweep --checkpoint {ckpt} --T 4 0", r"argument --T: must be >= 1, got 0"),
    ("T of 0 in the quickstart", "quickstart --T 0", r"argument --T: must be >= 1, got 0"),
    ("unknown method in the quickstart", "quickstart --methods bogus --out {root}/q",
     r"unknown method 'bogus'"),
    ("--out is a file", "convert --checkpoint {ckpt} --out {a_file}", r"a_file is a file, not a folder"),
    ("3-channel model, 1-channel data",
     "convert --checkpoint {rgb} --dataset fashion_mnist --data-dir {data}",
     r"takes inputs of shape \[3, 32, 32\] but fashion_mnist images are \[1, 28, 28\]"),
]
if not torch.cuda.is_available():
    CLI_CASES.append(("CUDA without a GPU", "convert --checkpoint {ckpt} --device cuda", r"has no CUDA GPU"))


@pytest.mark.parametrize(("case", "argv", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_input_gives_one_line_and_exit_code_2(case, argv, message, files, ann, fmnist,
                                                                 capsys):
    names = {k: str(v) for k, v in files.items()} | {"ckpt": str(ann / "last"), "data": str(fmnist),
                                                      "snn": str(files["root"] / "snn")}
    args = [a.format(**names) for a in argv.split()] + FAST
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's errors
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (files["root"] / "s").exists() and not (files["root"] / "q").exists()  # failed early


def test_api_refuses_what_would_go_silently_wrong():
    model = Plain()
    x = torch.rand(16, 3, 8, 8)
    snn = snncal.convert(model, x, T=4)
    nan = x.clone()
    nan[1, 0, 2, 3] = float("nan")
    cases = [
        (lambda: snn.simulate(x, T=0), ValueError, r"T must be an integer >= 1, got 0"),
        (lambda: snn.simulate(x, T=-3), ValueError, r"T must be an integer >= 1, got -3"),
        (lambda: snncal.convert(model, x, T=2.5), ValueError, r"T must be an integer, got 2.5"),
        (lambda: snncal.convert(model, nan, T=4), ValueError,
         r"hold 1 non-finite values \(NaN or Inf\), the first in image 1"),
        (lambda: snncal.convert(model, torch.cat([x, torch.full((1, 3, 8, 8), float("inf"))]), T=4),
         ValueError, r"non-finite values"),
        (lambda: snncal.evaluate(snn, [(x, torch.zeros(16, dtype=torch.long))], T=[0]),
         ValueError, r"every T must be an integer >= 1"),
        (lambda: snncal.convert(zoo.create("cnn_small", 10, mean=(0.5,) * 3, std=(0.2,) * 3),
                                torch.rand(4, 1, 32, 32), T=4),
         snncal.ConversionError, r"input of shape \(4, 1, 32, 32\) is broadcast to \(4, 3, 32, 32\)"),
        (lambda: snncal.convert(model, torch.rand(4, 3, 16, 16), T=4),
         snncal.ConversionError, r"fails on an input of shape \(4, 3, 16, 16\)"),
    ]
    broken = Plain()
    with torch.no_grad():
        broken.fc.weight[0, 0] = float("nan")
    cases.append((lambda: snncal.convert(broken, x, T=4), snncal.ConversionError,
                  r"parameter 'fc.weight' has 1 of 1280 values NaN or infinite"))
    for call, kind, message in cases:
        with pytest.raises(kind, match=message):
            call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_in_another_precision_converts_and_calibrates(dtype):
    model = Plain().to(dtype)
    x = torch.rand(32, 3, 8, 8)
    snn = snncal.convert(model, x.to(dtype), T=8, method="light")
    out = snn(x.to(dtype))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_evaluate_gives_the_model_back_in_its_mode():
    model = Plain().train()
    data = [(torch.rand(8, 3, 8, 8), torch.zeros(8, dtype=torch.long))]
    snncal.evaluate(model, data)
    assert model.training
    snn = snncal.convert(model.eval(), data[0][0], T=4)
    snn.train()
    snncal.evaluate(snn, data, T=[4], ann=model.train())
    assert snn.training and model.training


def test_no_progress_hides_every_bar(ann, fmnist, tmp_path, capsys):
    assert main(["convert", "--checkpoint", str(ann / "last"), "--data-dir", str(fmnist), "--method", "light",
                 "--T", "4", "--num-images", "16", "--out", str(tmp_path), *FAST]) == 0
    err = capsys.readouterr().err
    assert "calibrate" not in err and "%|" not in err


def test_no_file_a_user_can_place_runs_code(ann, fmnist, tmp_path, monkeypatch, capsys):
    """A pickle in every place snncal reads a file from: nothing runs, and each says so."""
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.pt"
    torch.save(Payload(marker), payload)
    pickled = payload.read_bytes()
    # a run folder's resume state
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.pt").write_bytes(pickled)
    assert main(["train", "--arch", "cnn_small", "--dataset", "fashion_mnist", "--data-dir", str(fmnist),
                 "--epochs", "1", "--out", str(run), "--no-progress"]) == 2
    assert "is not a resume state written by snncal train" in capsys.readouterr().err
    # checkpoints, SNN files, results files, Fashion-MNIST files
    for name in ("ann.safetensors", "snn.safetensors"):
        (tmp_path / name).write_bytes(pickled)
    with pytest.raises(ValueError, match=r"ann\.safetensors"):
        snncal.ann.checkpoint.load_checkpoint(tmp_path / "ann")
    with pytest.raises(ValueError, match=r"snn\.safetensors"):
        snncal.load(tmp_path / "snn")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_bytes(pickled)
    assert main(["sweep", "--checkpoint", str(ann / "last"), "--data-dir", str(fmnist), "--methods", "none",
                 "--T", "4", "--test-images", "10", "--num-images", "8", "--out", str(sweep), *FAST]) == 2
    assert "is not a results file" in capsys.readouterr().err
    idx = tmp_path / "idx"
    idx.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (idx / name).write_bytes(pickled)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        snncal.ann.data.build_dataset("fashion_mnist", idx, "test")
    # the decoded-images cache of an image folder: ignored with a warning, decoded again
    from PIL import Image
    from tiny import images

    from snncal.ann.data import load_image_folder

    folder = tmp_path / "folder"
    pixels, labels = images(4, 0, 32, 3)
    for i, (img, k) in enumerate(zip(pixels, labels)):
        (folder / f"c{k}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"c{k}" / f"{i}.png")
    cache = tmp_path / "cache"
    first = load_image_folder(folder, cache_dir=cache)
    for blob in cache.iterdir():
        blob.write_bytes(pickled)
    again = load_image_folder(folder, cache_dir=cache)
    assert torch.equal(first.images, again.images)
    # the calibration sweep's spilled spike trains
    from snncal.core.calibrate.store import MemoryBudget, SpikeStore

    store = SpikeStore(MemoryBudget(0), lambda: str(tmp_path))
    store.entries.append((str(payload), (1,)))
    with pytest.raises(Exception, match="Weights only load failed"):
        store.load(0)
    assert not marker.exists()


def _sweep_args(out: Path, ann: Path, fmnist: Path) -> list[str]:
    return ["sweep", "--checkpoint", str(ann / "last"), "--data-dir", str(fmnist), "--methods", "none",
            "light", "--T", "4", "8", "--test-images", "20", "--num-images", "16", "--batch-size", "8",
            "--out", str(out), *FAST]


def _sweep(out: Path, ann: Path, fmnist: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-m", "snncal", *_sweep_args(out, ann, fmnist)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _values(path: Path) -> dict:
    keep = ("acc", "agreement", "logit_mse", "calib_mse_before", "calib_mse_after", "test_images")
    rows = json.loads(path.read_text())["rows"]
    return {(r["method"], r["T"], r["seed"]): {k: r[k] for k in keep} for r in rows}


def test_a_sweep_killed_mid_row_resumes_to_the_same_values(ann, fmnist, tmp_path):
    killed = tmp_path / "killed"
    proc = _sweep(killed, ann, fmnist)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill -9 while the second row runs
        path = killed / "sweep.json"
        if path.exists() and len(json.loads(path.read_text())["rows"]) >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _values(killed / "sweep.json")
    assert 1 <= len(done) < 4
    assert main(_sweep_args(killed, ann, fmnist)) == 0  # resumed (in this process: the kill is what
    assert main(_sweep_args(tmp_path / "whole", ann, fmnist)) == 0  # needed a process of its own)
    resumed, whole = _values(killed / "sweep.json"), _values(tmp_path / "whole" / "sweep.json")
    assert len(whole) == 4 and resumed == whole
    assert {k: resumed[k] for k in done} == done  # the rows kept from before the kill are untouched
