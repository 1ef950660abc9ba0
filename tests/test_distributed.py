"""torch.distributed: two gloo processes on CPU give the network and the accuracy of one process.

The workers are spawned once per module (file-based rendezvous, no network), each converts the
same model on its own share of the calibration images and evaluates a Dataset it shards itself;
they save what they got, and the tests compare it with one process on the concatenated shares.
"""

import copy
import datetime
import functools
import math
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nets import Mixed, randomize_bn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import snncal
from snncal.ann.models import create as create_model
from snncal.core import distributed

WORLD = 2
SHARES = (13, 10)  # unequal shares: every sum must be weighted by what each rank saw
TEST_IMAGES = 15  # odd: two ranks cannot split it evenly, and padding would show in the total
BASE = dict(T=8, batch_size=32)
EQUAL = {  # deterministic methods: 2 ranks == 1 process on the concatenated shares
    "none": dict(method="none"),
    "light": dict(method="light"),
    "light-percentile-per-layer": dict(method="light", threshold="percentile", per_channel=False),
    "snn_max": dict(method="snn_max"),
    "light+": dict(method="light+"),  # time-dependent bias: per-step sums over ranks
    "balanced": dict(method="balanced+bias"),  # locally balanced thresholds
}
# A network deep enough to amplify a flipped last bit: ResNet-20 at width 4 (20 neuron layers,
# 9 residual adds). Unequal shares; chunks that end differently on each side: the ranks' last
# minibatch and ANN chunk hold 1 or 2 images, the one-process runs' 47, 1 or none.
DEEP = ("none", "light", "light+")
DEEP_SHARES = (20, 28)
DEEP_BASE = dict(T=8)  # num_images: 1024 by default, so each rank takes its whole share
DEEP_RANKS = dict(max_batch=24, batch_size=19)  # 3 images a minibatch
DEEP_SINGLE = (dict(max_batch=64, batch_size=19), dict(max_batch=376, batch_size=48))  # 8, 47
SAME = {  # random minibatches: the ranks must agree with each other
    "advanced": dict(method="advanced", weight_iters=4, weight_batch=8),
    "hybrid": dict(method="hybrid", hybrid_epochs=1, hybrid_batch=8),  # 5 + 3 images a step
    "block": dict(method="block_spikes+tbias", weight_iters=4, weight_batch=8),
}


def _model():
    torch.manual_seed(0)
    return randomize_bn(Mixed())


def _data():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(sum(SHARES), 3, 8, 8, generator=gen)
    y = torch.randint(10, (sum(SHARES),), generator=gen)
    return x, y


def _deep_model():
    torch.manual_seed(0)
    return randomize_bn(create_model("resnet20_he", width=0.25))


def _deep_data():
    gen = torch.Generator().manual_seed(3)
    return torch.rand(sum(DEEP_SHARES), 3, 8, 8, generator=gen), torch.rand(16, 3, 8, 8, generator=gen)


def _test_set():
    gen = torch.Generator().manual_seed(2)
    return torch.rand(TEST_IMAGES, 3, 8, 8, generator=gen), torch.randint(10, (TEST_IMAGES,), generator=gen)


class Recorded(Dataset):
    """A TensorDataset that remembers which items were read."""

    def __init__(self, *tensors):
        self.data, self.seen = TensorDataset(*tensors), []

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.data[i]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        x, y = _data()
        start = sum(SHARES[:rank])
        share = slice(start, start + SHARES[rank])
        calib = TensorDataset(x[share], y[share])
        result = {"world": distributed.world_size(), "rank": distributed.rank()}
        for case, kw in {**EQUAL, **SAME}.items():
            train = calib if case.startswith("hybrid") else None  # its share of the training set
            snn = snncal.convert(_model(), x[share], train_data=train, **BASE, **kw)
            result[case] = {k: v.clone() for k, v in snn.state_dict().items()}
            result[case + "/report"] = snn.calibration
        deep, probe = _deep_data()
        start = sum(DEEP_SHARES[:rank])
        for method in DEEP:
            snn = snncal.convert(_deep_model(), deep[start : start + DEEP_SHARES[rank]], method=method,
                                 **DEEP_BASE, **DEEP_RANKS)
            result["deep/" + method] = {k: v.clone() for k, v in snn.state_dict().items()}
            result["deep/" + method + "/out"] = snn.simulate(probe, T=8)
        snn = snncal.convert(_model(), x[share], **BASE, **EQUAL["none"])
        test = Recorded(*_test_set())
        result["accuracy"] = snncal.evaluate(snn, test, T=(4, 8), batch_size=4).snn
        result["seen"] = test.seen
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the 2 ranks saved."""
    tmp = tmp_path_factory.mktemp("dist")
    ctx = mp.spawn(_worker, args=(str(tmp / "rendezvous"), str(tmp)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail("the distributed workers did not finish in 240 s")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@functools.cache
def _single(case: str) -> snncal.SpikingNetwork:
    x, y = _data()
    train = TensorDataset(x, y) if case.startswith("hybrid") else None
    return snncal.convert(_model(), x, train_data=train, **BASE, **{**EQUAL, **SAME}[case])


def test_the_workers_saw_a_process_group(ranks):
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]


@pytest.mark.parametrize("case", sorted(EQUAL))
def test_two_ranks_equal_one_process_on_the_concatenated_shares(ranks, case):
    one = _single(case)
    expected = one.state_dict()
    assert sum(k.endswith(".threshold") for k in expected) == 7  # 6 ReLUs, 1 pool
    for got in (r[case] for r in ranks):
        assert got.keys() == expected.keys()
        different = [key for key, value in expected.items() if not torch.equal(got[key], value)]
        assert not different, different  # exact sums: bit for bit (calibrate/sums.py)
    report = ranks[0][case + "/report"]
    assert report.num_images == one.calibration.num_images == sum(SHARES)
    for a, b in zip(report.layers, one.calibration.layers, strict=True):
        assert (a.name, a.mse_before, a.mse_after) == (b.name, b.mse_before, b.mse_after)


def test_thresholds_of_none_are_exactly_one_process_s(ranks):
    """Maxima and histogram counts are exact reductions, so the MMSE thresholds are too."""
    expected = _single("none").state_dict()
    for key in (k for k in expected if k.endswith(".threshold")):
        assert torch.equal(ranks[0]["none"][key], expected[key]), key


@functools.cache
def _deep_single(method: str, setting: int) -> snncal.SpikingNetwork:
    return snncal.convert(_deep_model(), _deep_data()[0], method=method, **DEEP_BASE,
                          **DEEP_SINGLE[setting])


@pytest.mark.parametrize("method", DEEP)
def test_a_deep_network_is_bitwise_the_same_for_any_split(ranks, method):
    """Exact sums (calibrate/sums.py): 2 ranks with unequal shares and one process with two
    max_batch values give the same network bit for bit, and the same outputs."""
    one, other = _deep_single(method, 0), _deep_single(method, 1)
    assert len(one.neurons()) == 20
    expected = one.state_dict()
    probe = _deep_data()[1]
    out = one.simulate(probe, T=8)
    for name, got in [("max_batch", other.state_dict())] + [(f"rank {r}", ranks[r]["deep/" + method])
                                                             for r in range(WORLD)]:
        assert got.keys() == expected.keys()
        different = [k for k in expected if not torch.equal(got[k], expected[k])]
        assert not different, f"{name}: {different}"
    assert torch.equal(other.simulate(probe, T=8), out)
    for r in range(WORLD):
        assert torch.equal(ranks[r]["deep/" + method + "/out"], out)
    if method != "none":  # calibration changed the network: the test compares something
        before = _deep_single("none", 0).state_dict()
        assert any(not torch.equal(before[k], v) for k, v in expected.items())


@pytest.mark.parametrize("case", sorted(SAME))
def test_random_methods_leave_every_rank_with_the_same_network(ranks, case):
    a, b = (r[case] for r in ranks)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    report_a, report_b = (r[case + "/report"] for r in ranks)
    assert report_a.num_images == sum(SHARES)
    assert _errors(report_a) == _errors(report_b)  # statistics and losses are all-reduced
    assert report_a.extra == report_b.extra


def _errors(report) -> list[tuple]:
    """Each layer's errors and weight losses (NaN, for a layer without weights, as None)."""
    return [(e.name, e.mse_before, e.mse_after, *_losses(e)) for e in report.layers]


def _losses(entry) -> tuple:
    return tuple(None if v is None or math.isnan(v) else v for v in entry.weight_loss or (None, None))


def test_advanced_calibrated_the_weights(ranks):
    before = _single("none").state_dict()
    after = ranks[0]["advanced"]
    changed = [k for k in before if k.endswith(".weight") and not torch.equal(before[k], after[k])]
    assert changed, "weight calibration changed no weight"
    losses = [_losses(layer) for layer in ranks[0]["advanced/report"].layers]
    assert sum(lo[0] is not None for lo in losses) == 6  # every layer with weights
    assert all(lo[1] <= lo[0] for lo in losses if lo[0] is not None)


def test_evaluate_shards_a_dataset_counting_each_image_once(ranks):
    seen = [r["seen"] for r in ranks]
    assert sorted(seen[0] + seen[1]) == list(range(TEST_IMAGES))  # each once, none padded
    assert seen[0] == list(range(7)) and seen[1] == list(range(7, 15))
    assert ranks[0]["accuracy"] == ranks[1]["accuracy"]
    # the network rank 0 evaluated, run by one process over the whole test set
    snn = copy.deepcopy(_single("none"))
    snn.load_state_dict(ranks[0]["none"])
    x, y = _test_set()
    expected = snncal.evaluate(snn, [(x, y)], T=(4, 8)).snn
    assert ranks[0]["accuracy"] == expected
    for acc in expected.values():  # a multiple of 1/15: 15 images counted, not 16
        assert math.isclose(acc * TEST_IMAGES / 100, round(acc * TEST_IMAGES / 100), abs_tol=1e-9)


def test_helpers_are_no_ops_in_one_process():
    t = torch.tensor([1.0, 5.0])
    assert distributed.all_reduce_sum(t) is t and distributed.all_reduce_max(t) is t
    assert t.tolist() == [1.0, 5.0]
    assert distributed.sum_scalars(2.5, 3) == (2.5, 3)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.share(7) == 7
    ds = TensorDataset(torch.arange(5))
    assert distributed.shard(ds) is ds
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.average_gradients([p], 0.5)
    assert p.grad.tolist() == [2.0, 2.0, 2.0]
    distributed.barrier()
    distributed.stop()  # no group: nothing to leave


@pytest.mark.parametrize("n", [0, 1, 2, 7, 15, 64])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_cover_every_index_once(n, world):
    blocks = [distributed.shard_range(n, r, world) for r in range(world)]
    assert [i for b in blocks for i in b] == list(range(n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_evaluate_takes_a_dataset_or_a_loader_in_one_process():
    model = _model()
    x, y = _test_set()
    snn = snncal.convert(model, x, T=8)
    data = Recorded(x, y)
    by_set = snncal.evaluate(snn, data, T=(2, 8), batch_size=4).snn
    assert data.seen == list(range(TEST_IMAGES))
    assert by_set == snncal.evaluate(snn, DataLoader(TensorDataset(x, y), batch_size=6), T=(2, 8)).snn
    hits = (snn.simulate(x, T=8).argmax(1) == y).sum().item()
    assert by_set[8] == pytest.approx(100 * hits / TEST_IMAGES)
    ann = snncal.evaluate(model, TensorDataset(x, y), batch_size=5).ann
    assert ann == pytest.approx(100 * (model(x).argmax(1) == y).sum().item() / TEST_IMAGES)


def _sweep_command(out, ann, fmnist) -> list[str]:
    return ["sweep", "--checkpoint", str(ann / "last"), "--data-dir", str(fmnist), "--methods", "none",
            "light", "--T", "4", "--test-images", "21", "--num-images", "24", "--batch-size", "8",
            "--out", str(out), "--threads", "1", "--no-progress"]


def test_the_command_line_under_torchrun_writes_what_one_process_writes(ann, fmnist, tmp_path):
    """``torchrun --nproc_per_node 2 -m snncal sweep``: rank 0 alone writes, and its rows are one
    process's rows (accuracies equal; logit errors to float tolerance: each rank batches its share,
    and light's sums are split over ranks)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "snncal", *_sweep_command(tmp_path / "one", ann, fmnist)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([*torchrun, "-m", "snncal", *_sweep_command(tmp_path / "two", ann, fmnist)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("# Sweep") == 1  # rank 0 prints
    rows = {}
    for run in ("one", "two"):
        saved = json.loads((tmp_path / run / "sweep.json").read_text())
        rows[run] = {r["method"]: r for r in saved["rows"]}
        assert saved["ann"]["acc"] == rows.setdefault("ann", saved["ann"]["acc"])
    for key in ("acc", "agreement", "test_images"):
        assert rows["two"]["none"][key] == rows["one"]["none"][key]
        assert rows["two"]["light"][key] == rows["one"]["light"][key]
    # each rank batches its own share, and a CPU's conv kernels may round differently by batch size
    assert rows["two"]["none"]["logit_mse"] == pytest.approx(rows["one"]["none"]["logit_mse"], rel=1e-6)
    assert rows["two"]["light"]["logit_mse"] == pytest.approx(rows["one"]["light"]["logit_mse"], rel=1e-4)
    assert rows["two"]["light"]["test_images"] == 21
