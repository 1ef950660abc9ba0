"""The paper's baselines as methods of the step table: each one's defining property on tiny nets."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, Plain, randomize_bn
from torch import nn

import snncal
from snncal.core.calibrate import METHODS, STEPS, get_method, register_method, register_step
from snncal.core.encoding import switch
from snncal.core.graph import prepare
from snncal.core.neuron import IFNeuron, if_scan


class Chain(nn.Module):
    """Three conv-ReLU layers and a linear head: every neuron reads the one before it."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3), nn.Conv2d(6, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))))
        return self.fc(x.flatten(1))


def test_shift_ends_in_the_spike_count_of_an_initial_potential_of_half_a_threshold():
    x = torch.rand(1000) * 1.2 - 0.1  # constant currents, some clipped at both ends
    th, T = torch.tensor(0.5), 16
    shifted = IFNeuron(th, shift=True).scan(x, torch.zeros(1000), T, T)[0].sum(0)
    halfway = if_scan(x, torch.full((1000,), 0.25), th, T)[0].sum(0)
    assert torch.equal(shifted, halfway)


def test_opt_is_the_running_average_of_minibatch_maxima_with_the_shift():
    model = randomize_bn(Plain())
    x = torch.rand(64, 3, 8, 8)
    snn = snncal.convert(model, x, T=8, method="opt", num_images=64, batch_size=16)
    ann = prepare(model, x)
    # the slow way, as Li et al.'s hook: each minibatch of 16 in order, m = 0.9 m + 0.1 max
    expected: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, inputs, out):
            top = out.max()
            expected[name] = top if name not in expected else 0.9 * expected[name] + 0.1 * top
        return record

    hooks = [ann.get_submodule(n).register_forward_hook(hook(n)) for n in snn.neurons()]
    for batch in x.split(16):
        ann(batch)
    for h in hooks:
        h.remove()
    for name, neuron in snn.neurons().items():
        assert neuron.shift and neuron.reset == "subtract" and neuron.threshold.dim() == 0
        torch.testing.assert_close(neuron.threshold, expected[name], rtol=1e-6, atol=0)


class BiasFreeChain(nn.Module):
    """The sources' setting: bias-free convs, ReLU, an average pool of spikes, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.c3 = nn.Conv2d(6, 4, 3, bias=False)
        self.fc = nn.Linear(4 * 2 * 2, 5, bias=False)

    def layers(self) -> list:
        """What each neuron's input current is, from the spikes of the one before."""
        return [self.c1, lambda s: self.c2(s), lambda s: self.c3(F.avg_pool2d(s, 2))]

    def forward(self, x):
        x = F.relu(self.c3(F.avg_pool2d(F.relu(self.c2(F.relu(self.c1(x)))), 2)))
        return self.fc(x.flatten(1))


def _source_thresholds(layers: list, x: torch.Tensor, T: int, rule: str, reset: str) -> list:
    """The sources' thresholds, the slow way and in the sources' units (0/1 spikes, the ANN's
    weights): for each layer in turn, simulate the network from scratch over ``T`` steps with the
    thresholds found so far, input ``x`` as a constant current, and take the largest input
    current of that layer at any step (Spike-Norm, ``"max"``) or the largest time-averaged one
    (RMP, ``"mean"``)."""
    found: list[torch.Tensor] = []
    with torch.no_grad():
        for layer in range(len(layers)):
            v = [torch.zeros(()) for _ in range(layer)]
            seen = []
            for _t in range(T):
                s = x
                for k in range(layer):
                    v[k] = v[k] + layers[k](s)
                    fired = (v[k] >= found[k]).float()
                    v[k] = v[k] - fired * found[k] if reset == "subtract" else v[k] * (1 - fired)
                    s = fired
                seen.append(layers[layer](s))
            seen = torch.stack(seen)
            found.append(seen.max() if rule == "max" else seen.mean(0).max())
    return found


def _direct(name: str, base: str):
    """``base`` with a constant-current input, so that the reference needs no random numbers."""
    m = METHODS[base]
    return register_method(name, m.steps, reset=m.reset, per_channel=False, encoding="direct",
                           convert_avgpool=False)


@pytest.mark.parametrize("base, rule", [("spike_norm", "max"), ("rmp", "mean")])
def test_thresholds_are_the_sources_of_a_layer_by_layer_reference_simulation(base, rule):
    """snncal's Vth of layer l (spikes of height Vth) is the product of the sources' thresholds
    up to l (0/1 spikes): the same spike trains, no more compounding than the source's."""
    _direct("direct_" + base, base)
    try:
        torch.manual_seed(0)
        model = BiasFreeChain()
        x = torch.rand(16, 3, 8, 8)
        snn = snncal.convert(model, x, T=6, method="direct_" + base, num_images=16, max_batch=16 * 6)
        theta = _source_thresholds(model.layers(), x, 6, rule, METHODS[base].reset)
        got = [n.threshold for n in snn.neurons().values()]
        assert len(got) == 3  # no neuron in the pool
        for k in range(3):
            torch.testing.assert_close(got[k], torch.stack(theta[: k + 1]).prod(), rtol=1e-5, atol=0)
    finally:
        METHODS.pop("direct_" + base)


class Block(nn.Module):
    """A residual block of the sources: relu(conv2(relu(conv1(a))) + a), bias-free."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4 * 8 * 8, 3, bias=False)

    def forward(self, x):
        a = F.relu(self.c0(x))
        return self.fc(F.relu(self.c2(F.relu(self.c1(a))) + a).flatten(1))


def test_spike_norm_passes_a_residual_block_s_inner_spikes_at_the_scale_of_its_input():
    """Sengupta et al.: the non-identity path's neuron gets unity threshold (in the sources'
    units), the junction the maximum of its summed current; in snncal's units the inner neuron
    shares the block input's threshold."""
    _direct("direct_spike_norm", "spike_norm")
    try:
        torch.manual_seed(0)
        model = Block()
        x = torch.rand(8, 3, 8, 8)
        snn = snncal.convert(model, x, T=5, method="direct_spike_norm", num_images=8, max_batch=40)
        with torch.no_grad():  # the source, slow: binary spikes, the ANN's weights
            th_a = model.c0(x).max()
            va, vb, seen = torch.zeros(()), torch.zeros(()), []
            for _t in range(5):
                va = va + model.c0(x)
                sa = (va >= th_a).float()
                va = va * (1 - sa)
                vb = vb + model.c1(sa)
                sb = (vb >= 1.0).float()  # unity threshold
                vb = vb * (1 - sb)
                seen.append(model.c2(sb) + sa)
            th_j = torch.stack(seen).max()
        a, b, j = snn.neurons().values()
        torch.testing.assert_close(a.threshold, th_a, rtol=1e-6, atol=0)
        torch.testing.assert_close(b.threshold, th_a, rtol=1e-6, atol=0)
        torch.testing.assert_close(j.threshold, th_a * th_j, rtol=1e-5, atol=0)
    finally:
        METHODS.pop("direct_spike_norm")


def test_baselines_use_their_sources_settings():
    torch.manual_seed(0)
    model = randomize_bn(Mixed())
    x = torch.rand(16, 3, 16, 16)
    for method, reset, encoding in (("spike_norm", "zero", "poisson"), ("rmp", "subtract", "poisson"),
                                    ("tsc", "subtract", "switch"), ("opt", "subtract", "direct")):
        snn = snncal.convert(model, x, T=8, method=method, num_images=16)
        assert snn.encoding == encoding
        assert all(n.reset == reset and n.threshold.dim() == 0 for n in snn.neurons().values())
        # the pools of spikes stay linear: no neuron for Mixed's AvgPool2d and its head
        assert len(snn.neurons()) == 5 and "pool" in dict(snn.graph.named_modules())
        assert torch.isfinite(snn(x)).all()
    assert len(snncal.convert(model, x, T=8, method="none", num_images=16).neurons()) == 7


def test_rmp_neuron_matches_a_hand_computed_spike_train():
    # reset by subtraction keeps the residual potential: input 0.6 against Vth = 1
    out, v = if_scan(torch.tensor([0.6]), torch.zeros(1), torch.tensor(1.0), 5, "subtract")
    assert out.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 1.0] and v.item() == pytest.approx(0.0, abs=1e-6)
    # reset to zero (Spike-Norm) throws it away
    out, _ = if_scan(torch.tensor([0.6]), torch.zeros(1), torch.tensor(1.0), 5, "zero")
    assert out.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def _reference_counts(x: list[float], th: float, T: int) -> list[int]:
    """The soft-reset neuron one step at a time: charge, fire at v >= Vth, subtract Vth."""
    counts = []
    for value in x:
        v, n = 0.0, 0
        for _t in range(T):
            v += value
            if v >= th:
                v, n = v - th, n + 1
        counts.append(n)
    return counts


def test_tsc_neuron_spike_counts_grow_with_its_input():
    x = [0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97, 1.0]  # the inputs
    snn = snncal.convert(Chain(), torch.rand(8, 3, 8, 8), T=32, method="tsc", num_images=8)
    neuron = next(iter(snn.neurons().values()))
    neuron.threshold = torch.tensor(1.0)
    current = torch.tensor(x)
    counts = (neuron.scan(current, neuron.init_state(current), 32, 32)[0] > 0).sum(0).tolist()
    assert counts == _reference_counts(x, 1.0, 32) == [1, 3, 6, 9, 14, 19, 24, 28, 31, 32]
    assert all(a < b for a, b in itertools.pairwise(counts))
    # the switch code: on from step 0 for round(T |x| / max|x|) steps, with the sign of x
    codes = switch(torch.tensor([[1.0, 0.5, -0.25, 0.0]]), 0, 8, 8).view(8, 4)
    assert codes.sum(0).tolist() == [8.0, 4.0, -2.0, 0.0]
    assert codes[:, 1].tolist() == [1.0] * 4 + [0.0] * 4


def _hybrid_data(model: nn.Module, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=gen)
    y = model(x).argmax(1).roll(1)  # labels the network does not predict yet: room to learn
    return x, torch.utils.data.TensorDataset(x, y)


def test_hybrid_trains_on_the_training_set_and_lowers_its_loss():
    torch.manual_seed(0)
    model = randomize_bn(Plain(classes=4))
    calib, _ = _hybrid_data(model, 32, 1)
    _, train = _hybrid_data(model, 64, 2)
    kw = dict(T=8, method="hybrid", num_images=32, hybrid_lr=1e-2, hybrid_batch=32)
    snn = snncal.convert(model, calib, train_data=train, hybrid_epochs=4, **kw)
    losses = snn.calibration.extra["hybrid_loss"]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.9
    # the training set is required, and the calibration images are no substitute for it
    with pytest.raises(ValueError, match="labelled training set"):
        snncal.convert(model, torch.utils.data.TensorDataset(calib, calib[:, 0, 0, 0].long()), **kw)
    # fine-tuning moves the network well beyond the golden files' 2 % tolerance
    skipped = snncal.convert(model, calib, hybrid_epochs=0, **kw).state_dict()
    trained = snn.state_dict()
    assert skipped.keys() == trained.keys()
    for key in (k for k in trained if k.endswith("weight")):
        change = (trained[key] - skipped[key]).norm() / skipped[key].norm()
        assert change > 0.05, key


def test_hybrid_images_shortens_each_epoch_to_a_fresh_draw():
    from snncal.core.calibrate.finetune import _epoch
    from snncal.core.config import ConvertConfig

    x = torch.arange(64.0).view(64, 1)
    train = torch.utils.data.TensorDataset(x, torch.zeros(64, dtype=torch.long))
    cfg = ConvertConfig(T=8, hybrid_batch=8, hybrid_images=20)
    order = torch.Generator().manual_seed(0)
    epochs = [torch.cat([b for b, _ in _epoch(train, cfg, order)]).flatten() for _ in range(2)]
    assert [len(e) for e in epochs] == [20, 20] and [len(set(e.tolist())) for e in epochs] == [20, 20]
    assert set(epochs[0].tolist()) != set(epochs[1].tolist())  # a fresh draw, not a fixed subset
    whole = torch.cat([b for b, _ in _epoch(train, ConvertConfig(T=8, hybrid_batch=8), order)])
    assert sorted(whole.flatten().tolist()) == x.flatten().tolist()
    with pytest.raises(ValueError, match="hybrid_images must be"):
        ConvertConfig(hybrid_images=0)
    with pytest.raises(ValueError, match="give it a Subset"):
        next(_epoch(torch.utils.data.DataLoader(train, batch_size=8), cfg, order))


def test_a_new_method_with_a_new_step_plugs_in_without_touching_calibrate():
    calls = []

    def halve_thresholds(layer, cfg):
        calls.append(layer.name)
        layer.neuron.threshold = layer.neuron.threshold / 2
        layer.changed()

    register_step("halve", halve_thresholds, spikes=False)
    register_method("max_halved", ("max", "halve"), per_channel=False)
    try:
        model = Chain()
        x = torch.rand(16, 3, 8, 8)
        a = snncal.convert(model, x, T=4, method="max_halved", num_images=16)
        b = snncal.convert(model, x, T=4, method="max", per_channel=False, num_images=16)
        assert calls == list(a.neurons())
        for name in a.neurons():
            assert torch.equal(a.neurons()[name].threshold * 2, b.neurons()[name].threshold)
        assert get_method("max_halved").steps == ("max", "halve")
    finally:
        METHODS.pop("max_halved")
        STEPS.pop("halve")
