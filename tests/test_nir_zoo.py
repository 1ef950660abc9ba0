"""The NIR claim of docs/interop.md on a few zoo models, as `benchmarks/nir_zoo.py` checks the whole
zoo: exported, read back from the file and run by the reference consumer, each reproduces
``snn.simulate`` exactly."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("nir")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from nir_zoo import check


@pytest.mark.parametrize("name", ["cnn_small", "resnet20_he", "mobilenet_cifar"])
def test_zoo_model_exports_and_reproduces_the_snn_exactly(tmp_path, name):
    row = check(name, tmp_path)
    assert "error" not in row, row
    assert row["nir_nodes"] > 0 and row["max_diff"] == 0, row
