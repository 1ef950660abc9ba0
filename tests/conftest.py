import os
from pathlib import Path

import pytest
import torch
from tiny import fashion_mnist

# Tiny test models gain nothing from threads, and threads thrash on a shared 2-core machine.
torch.set_num_threads(1)
# Eager IF neurons unless a test is about compilation (those set SNNCAL_COMPILE=1 themselves and
# compare with eager ops bit for bit): compiling a kernel costs seconds, a tiny scan microseconds.
# Set in the environment, so the command-line tests' subprocesses inherit it.
os.environ["SNNCAL_COMPILE"] = "0"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fmnist(tmp_path_factory) -> Path:
    """A tiny Fashion-MNIST in the Debian package's layout: 200 train and 100 test images."""
    return fashion_mnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="session")
def ann(fmnist, tmp_path_factory) -> Path:
    """``snncal train``: one epoch of cnn_small (half width) on the tiny Fashion-MNIST."""
    from snncal.app.cli import main

    out = tmp_path_factory.mktemp("ann")
    rc = main(["train", "--arch", "cnn_small", "--width", "0.5", "--dataset", "fashion_mnist",
               "--data-dir", str(fmnist), "--epochs", "1", "--batch-size", "50", "--augment", "none",
               "--threads", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    return out
