import pytest
import torch
from nets import Plain, randomize_bn

import snncal
from snncal.core.config import ConvertConfig, make_config
from snncal.core.convert import calibration_images
from snncal.core.neuron import clip_floor
from snncal.core.observers import HistogramObserver, MaxObserver


def _observe(x, per_channel=False):
    mx = MaxObserver(per_channel)
    for b in x.split(64):
        mx(b)
    h = HistogramObserver(mx.max_val)
    for b in x.split(64):
        h(b)
    return mx, h


def _exact_mse(x, th, T):
    return ((x.clamp_min(0) - clip_floor(x, th, T)) ** 2).sum()


@pytest.mark.parametrize("T", [4, 16, 64])
def test_mmse_grid_search_matches_brute_force(T):
    x = torch.randn(512, 4, 6, 6).double() ** 3  # heavy tailed, like real activations
    _, h = _observe(x)
    chosen = h.mmse(T)
    grid = torch.linspace(0.005, 1, 200, dtype=torch.float64) * x.max()
    brute = min(_exact_mse(x, th, T).item() for th in grid)
    assert _exact_mse(x, chosen.double(), T).item() <= brute * 1.01
    assert chosen < x.max()  # clipping pays off at low T


def test_per_channel_thresholds_follow_each_channel():
    x = torch.rand(256, 3, 5, 5) * torch.tensor([1.0, 4.0, 0.0]).view(1, 3, 1, 1)
    mx, h = _observe(x, per_channel=True)
    assert mx.max_val.shape == (3,)
    th = h.mmse(32)
    assert th.shape == (3,) and th[1] > 2 * th[0] and th[2] == 0  # dead channel: finalized later


def test_percentile_and_max():
    x = torch.linspace(-1, 10, 100_001)
    mx, h = _observe(x.view(-1, 1))
    assert mx.max_val.item() == pytest.approx(10.0)
    assert h.percentile(50.0).item() == pytest.approx(5.0, rel=1e-2)
    assert h.percentile(100.0).item() == pytest.approx(10.0, rel=1e-3)


def test_threshold_choices_order():
    model = randomize_bn(Plain())
    x = torch.rand(64, 3, 8, 8)
    th = {
        m: next(iter(snncal.convert(model, x, threshold=m, T=8, per_channel=False).neurons().values()))
        .threshold
        for m in ("max", "percentile", "mmse")
    }
    assert th["mmse"] < th["max"] and th["percentile"] <= th["max"]


def test_config_errors_list_what_is_allowed():
    with pytest.raises(ValueError, match="threshold must be one of"):
        ConvertConfig(threshold="median")
    with pytest.raises(TypeError, match="unknown conversion options \\['TT'\\]"):
        make_config(TT=3)


def test_calibration_images_from_every_kind_of_source():
    data = torch.arange(100.0).view(100, 1)
    a = calibration_images(data, 10, seed=1)
    assert a.shape == (10, 1) and torch.equal(a, calibration_images(data, 10, seed=1))
    assert not torch.equal(a, calibration_images(data, 10, seed=2))
    ds = torch.utils.data.TensorDataset(data, torch.zeros(100))
    assert torch.equal(calibration_images(ds, 10, seed=1), a)
    loader = torch.utils.data.DataLoader(ds, batch_size=7)
    assert torch.equal(calibration_images(loader, 10, seed=0), data[:10])
