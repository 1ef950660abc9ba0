"""ReLU6 is a clipped activation: every threshold rule and calibration step respects the clip.

The IF neuron saturates at one spike per step, a rate of ``Vth``: a threshold at most 6 gives the
clip for free, one above 6 lets the SNN exceed what the ANN clips and wastes resolution below 6.
The inputs here drive most pre-activations far above 6.
"""

import pytest
import torch
from torch import nn

import snncal
from snncal.core.calibrate import Sweep
from snncal.core.evaluate import layer_errors

CAP = 6.0


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU6(), nn.Conv2d(6, 6, 3, padding=1),
                        nn.ReLU6(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    with torch.no_grad():
        for conv in (net[0], net[2]):
            conv.weight.abs_().mul_(4.0)
            conv.bias.fill_(1.0)
    return net.eval()


def _images(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(1)) * 4


def test_inputs_drive_far_above_the_clip():
    net, x = _net(), _images()
    pre = net[0](x)
    assert (pre > CAP).float().mean() > 0.5 and pre.max() > 3 * CAP


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("rule", ["max", "percentile", "mmse"])
def test_thresholds_never_exceed_the_clip(rule, per_channel):
    snn = snncal.convert(_net(), _images(), T=16, threshold=rule, per_channel=per_channel)
    assert [n.ann_max for n in snn.neurons().values()][:2] == [CAP, CAP]  # then the pool's neuron
    for name, neuron in snn.neurons().items():
        assert 0 < neuron.threshold.max() <= CAP, (name, neuron.threshold)
    # with most inputs above the clip, the best threshold of every rule is the clip itself
    first = next(iter(snn.neurons().values()))
    torch.testing.assert_close(first.threshold.max(), torch.tensor(CAP))


@pytest.mark.parametrize("method", ["light", "advanced", "light+", "spike_norm", "rmp"])
def test_calibration_steps_keep_the_clip(method):
    snn = snncal.convert(_net(), _images(), T=16, method=method, weight_iters=5)
    for name, neuron in snn.neurons().items():
        assert neuron.threshold.max() <= CAP, (name, method, neuron.threshold)


def test_calibration_targets_are_the_clipped_ann():
    net, x = _net(), _images()
    snn = snncal.convert(net, x, T=16, threshold="max")
    with Sweep(snn.graph, x, snn.T, spiking=False) as ann:
        targets = {layer.name: layer.target for layer in ann.layers()}
    first = targets[next(iter(snn.neurons()))]
    torch.testing.assert_close(first, net[1](net[0](x)))
    assert all(t.max() <= CAP for t in targets.values())


def test_layer_errors_split_against_the_clip():
    """The input error compares the current, clipped as the ANN clips it, with the ANN."""
    net, x = _net(), _images()
    snn = snncal.convert(net, x, T=256, threshold="max")
    first = layer_errors(snn, x, snn)[0]
    assert first.input < 1e-10  # the first layer's current is the ANN's pre-activation


def test_snn_matches_the_ann_at_large_T():
    net, x = _net(), _images()
    snn = snncal.convert(net, x, T=512, threshold="max", per_channel=True)
    ref = net(x)
    out = snn.simulate(x, 512)
    assert (out - ref).abs().max() < 0.02 * ref.abs().max()
