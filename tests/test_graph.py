import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, Plain, randomize_bn
from torch import nn

from snncal.core.graph import ConversionError, fold_bn, prepare, trace


def _count(gm, kind):
    return sum(
        1 for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), kind)
    )


def test_fold_bn_preserves_outputs_and_removes_bn():
    model = randomize_bn(Mixed())
    x = torch.randn(8, 3, 16, 16)
    gm = fold_bn(trace(model))
    assert _count(gm, nn.BatchNorm2d) == 0
    torch.testing.assert_close(gm(x), model(x), atol=1e-5, rtol=1e-5)


def test_bn_after_no_conv_stays_as_affine():
    class PreAct(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.c(x)
            return self.bn(F.relu(y))

    model = randomize_bn(PreAct())
    gm = prepare(model, torch.randn(2, 3, 8, 8))
    assert _count(gm, nn.BatchNorm2d) == 1
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(gm(x), model(x))


def test_prepare_is_exact_and_gives_one_activation_per_relu_call():
    model = randomize_bn(Mixed())
    x = torch.randn(8, 3, 16, 16)
    gm = prepare(model, x)
    torch.testing.assert_close(gm(x), model(x), atol=1e-5, rtol=1e-5)
    # relu(b1), F.relu, torch.relu, relu(c3), F.relu(c4 + s), and two converted pools
    assert _count(gm, nn.ReLU) == 7
    assert _count(gm, nn.Dropout) == 0
    assert _count(gm, nn.AvgPool2d) == 0 and _count(gm, nn.AdaptiveAvgPool2d) == 0
    plain = prepare(model, x, convert_avgpool=False)
    assert _count(plain, nn.ReLU) == 5 and _count(plain, nn.AvgPool2d) == 1
    torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=1e-5)


def test_inplace_relu_readers_are_rewired():
    class Inplace(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.c(x)
            y.relu_()  # result unused: later reads of y must see the ReLU
            return y * 2

    model = Inplace()
    x = torch.randn(2, 3, 8, 8)
    gm = prepare(model, x)
    torch.testing.assert_close(gm(x), model(x))
    assert _count(gm, nn.ReLU) == 1


def test_relu6_becomes_capped_activation():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(2, 3, 6, 6)
    model(x)
    gm = prepare(model, x)
    acts = [m for m in gm.modules() if isinstance(m, nn.Hardtanh)]
    assert len(acts) == 1 and acts[0].max_val == 6.0


def test_maxpool_replaced_only_when_asked():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    x = torch.randn(2, 3, 10, 10)
    with pytest.raises(ConversionError, match="maxpool_to_avgpool=True"):
        prepare(model, x)
    gm = prepare(model, x, maxpool_to_avgpool=True, convert_avgpool=False)
    assert _count(gm, nn.AvgPool2d) == 1
    torch.testing.assert_close(gm(x), F.avg_pool2d(F.relu(model[0](x)), 2).flatten(1))


class _Act(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.c(x))


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (F.silu, "function silu"),
        (nn.GELU(), "module GELU"),
        (torch.sigmoid, "function sigmoid"),
        (lambda x: x * x, "function mul"),
        (lambda x: x.max(1).values, "method .max()"),
    ],
)
def test_unsupported_ops_name_node_op_and_source_line(fn, what):
    with pytest.raises(ConversionError) as err:
        prepare(_Act(fn), torch.randn(1, 3, 5, 5))
    msg = str(err.value)
    assert what in msg and "test_graph.py" in msg and "cannot convert node" in msg
    assert "ReLU" in msg  # says what to do


def test_data_dependent_control_flow_is_reported_with_its_line():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # the line the error must name
                return F.relu(x)
            return x

    with pytest.raises(ConversionError, match=r"test_graph.py:\d+ `if x.sum\(\) > 0:"):
        prepare(Branchy(), torch.randn(1, 3))


def test_concat_along_batch_is_refused():
    class Cat0(nn.Module):
        def forward(self, x):
            return torch.cat([F.relu(x), x], 0)

    with pytest.raises(ConversionError, match=r"torch\.cat|function cat"):
        prepare(Cat0(), torch.randn(2, 3))


def test_user_model_is_not_modified():
    model = randomize_bn(Plain())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepare(model, torch.randn(2, 3, 8, 8))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_hardtanh_that_is_not_a_relu_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardtanh(-1.0, 1.0))
    with pytest.raises(ConversionError, match="module Hardtanh"):
        prepare(model, torch.randn(1, 3, 5, 5))
