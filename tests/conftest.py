import pytest
import torch

# Tiny test models gain nothing from threads, and threads thrash on a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
