"""The GPU benchmark runs end to end on a CPU in its tiny mode, through its shell wrapper."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from snncal.core.device import auto_max_batch

ROOT = Path(__file__).resolve().parents[1]
TINY_MODELS = ["vgg16_bn", "resnet34", "resnet20"]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_gpu_benchmark_tiny_on_cpu_writes_every_row(tmp_path):
    out = tmp_path / "results" / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads(out.read_text())
    assert result["complete"] is True
    settings = result["settings"]
    assert settings["device"] == "cpu" and settings["tiny"] is True
    assert settings["max_batch"] == auto_max_batch(torch.device("cpu"))  # the library's, off CUDA
    rows = result["models"]
    assert [r["name"] for r in rows] == TINY_MODELS
    for r in rows:
        assert "error" not in r, r
        assert (r["batch"], r["T"], r["width"]) == (4, 4, 0.125)
        assert _positive(r["ratio"]) and _positive(r["images_per_s"]), r
        assert math.isclose(r["ratio"], r["snn_s"] / r["ann_s"])
        assert math.isclose(r["images_per_s"], 4 / r["snn_s"])
        assert r["peak_mb"] == {"4": None, "8": None}  # no GPU memory on a CPU
    light = result["light"]
    assert (light["name"], light["images"], light["T"]) == ("resnet34", 16, 4)
    assert light["if_layers"] == rows[1]["if_layers"] > 0
    assert _positive(light["ratio"])
    assert math.isclose(light["ratio"], light["convert_s"] / light["simulate_s"])

    # the same numbers as Markdown tables, memory as "n/a"
    assert "| resnet20 x0.125 | 32x32 | 4 | 4 |" in proc.stdout
    assert "| resnet34 x0.125 | 16 | 4 | 37 |" in proc.stdout
    assert proc.stdout.count("n/a") == 3 * 3
