"""The paper's baselines as methods of the step table: each one's defining property on tiny nets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nets import Plain, randomize_bn
from torch import nn

import snncal
from snncal.core.calibrate import METHODS, STEPS, get_method, register_method, register_step
from snncal.core.engine import switch
from snncal.core.graph import prepare
from snncal.core.neuron import IFNeuron, if_scan, switch_scan


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


def test_opt_is_per_layer_max_thresholds_with_the_shift():
    model = randomize_bn(Plain())
    x = torch.rand(64, 3, 8, 8)
    snn = snncal.convert(model, x, T=8, method="opt", num_images=64)
    ann = prepare(model, x)
    acts = {}
    for name, neuron in snn.neurons().items():
        assert neuron.shift and neuron.reset == "subtract" and neuron.threshold.dim() == 0
        acts[name] = neuron.threshold
    # the thresholds are the largest ANN activations: run the ANN and take each ReLU's max
    seen = {}
    hooks = [ann.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.max()))
             for n in acts]
    ann(x)
    for h in hooks:
        h.remove()
    assert all(torch.equal(acts[n], seen[n]) for n in acts)


def _reference_spike_norm(model: nn.Module, x: torch.Tensor, T: int) -> dict[str, torch.Tensor]:
    """Spike-Norm the slow way: for each layer in order, simulate the whole network with the
    thresholds found so far (later layers at a huge threshold: silent) and take the largest
    input current that layer receives at any step."""
    snn = snncal.to_spiking(prepare(model, x), reset="zero")
    names = list(snn.neurons())
    for neuron in snn.neurons().values():
        neuron.threshold = torch.tensor(1e30)
    found = {}
    for name in names:
        seen = []
        neuron = snn.neurons()[name]
        original = neuron.scan

        def record(current, v, steps, T_, residual=None, t0=0, original=original, seen=seen):
            seen.append(current.max())
            return original(current, v, steps, T_, residual, t0)

        neuron.scan = record
        snncal.simulate(snn.graph, x, T, max_batch=len(x) * T)
        del neuron.scan
        found[name] = neuron.threshold = torch.stack(seen).max()
    return found


def test_spike_norm_thresholds_are_the_maxima_of_a_layer_by_layer_reference_simulation():
    register_method("spike_norm_direct", ("snn_max",), reset="zero", per_channel=False, encoding="direct")
    try:
        model = Chain()
        x = torch.rand(16, 3, 8, 8)
        snn = snncal.convert(model, x, T=6, method="spike_norm_direct", num_images=16, max_batch=16 * 6)
        reference = _reference_spike_norm(model, x, 6)
        for name, neuron in snn.neurons().items():
            assert neuron.reset == "zero"
            torch.testing.assert_close(neuron.threshold, reference[name], rtol=1e-6, atol=0)
    finally:
        METHODS.pop("spike_norm_direct")


def test_baselines_use_their_sources_settings():
    model = Chain()
    x = torch.rand(16, 3, 8, 8)
    for method, reset, encoding in (("spike_norm", "zero", "poisson"), ("rmp", "subtract", "poisson"),
                                    ("tsc", "switch", "switch")):
        snn = snncal.convert(model, x, T=8, method=method, num_images=16)
        assert snn.encoding == encoding
        assert all(n.reset == reset and n.threshold.dim() == 0 for n in snn.neurons().values())
        assert torch.isfinite(snn(x)).all()


def test_rmp_neuron_matches_a_hand_computed_spike_train():
    # reset by subtraction keeps the residual potential: input 0.6 against Vth = 1
    out, v = if_scan(torch.tensor([0.6]), torch.zeros(1), torch.tensor(1.0), 5, "subtract")
    assert out.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 1.0] and v.item() == pytest.approx(0.0, abs=1e-6)
    # reset to zero (Spike-Norm) throws it away
    out, _ = if_scan(torch.tensor([0.6]), torch.zeros(1), torch.tensor(1.0), 5, "zero")
    assert out.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_tsc_neuron_fires_one_burst_and_input_switches_once():
    # current 0.7, then the input switches off (-0.2 leaks the rest away): one burst, never again
    x = torch.tensor([0.7, 0.7, 0.7, 0.7, 0.0, 0.0, 0.9, 0.9]).view(8, 1)
    out, state = switch_scan(x, torch.zeros(2, 1), torch.tensor(1.0), 8)
    # v: .7 -> 1.4 fire .4 -> 1.1 fire .1 -> .8 off (latched) ... never fires again
    assert out.flatten().tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert state[0].item() == float("-inf") and state[1].item() == 1.0
    # the switch code: on from step 0 for round(T |x| / max|x|) steps, with the sign of x
    codes = switch(torch.tensor([[1.0, 0.5, -0.25, 0.0]]), 0, 8, 8).view(8, 4)
    assert codes.sum(0).tolist() == [8.0, 4.0, -2.0, 0.0]
    assert codes[:, 1].tolist() == [1.0] * 4 + [0.0] * 4


def test_hybrid_lowers_the_training_loss_of_the_snn():
    torch.manual_seed(0)
    model = randomize_bn(Plain(classes=4))
    x = torch.rand(64, 3, 8, 8)
    y = model(x).argmax(1).roll(1)  # labels the network does not predict yet: room to learn
    data = torch.utils.data.TensorDataset(x, y)
    snn = snncal.convert(model, data, T=8, method="hybrid", num_images=64, hybrid_epochs=3,
                         hybrid_lr=1e-2, weight_batch=32)
    losses = snn.calibration.extra["hybrid_loss"]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.9
    with pytest.raises(ValueError, match="hybrid fine-tuning needs labels"):
        snncal.convert(model, x, T=8, method="hybrid", num_images=64)


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
