import inspect
import logging

import pytest
import torch
import torch.nn.functional as F
from nets import Mixed, OptionAResNet, Plain, randomize_bn
from torch import nn

import snncal
from snncal.core.graph import ConversionError, avgpool_to_dwconv, fold_bn, passes, prepare, trace


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


# ----------------------------------------------------------------------------- issue 12
def _pool_convs(gm):
    return [
        n for n in gm.graph.nodes if n.op == "call_module"
        and isinstance(m := gm.get_submodule(n.target), nn.Conv2d) and m.groups == m.in_channels > 1
    ]


def test_global_pool_sized_by_its_input_becomes_a_depthwise_conv():
    model = randomize_bn(OptionAResNet())  # F.avg_pool2d(out, out.size()[3]), option-A shortcuts
    x = torch.rand(4, 3, 8, 8)
    gm = prepare(model, x)
    (conv,) = _pool_convs(gm)
    mod = gm.get_submodule(conv.target)
    assert mod.kernel_size == (4, 4) and mod.stride == (4, 4) and mod.in_channels == 8
    assert torch.equal(mod.weight, torch.full_like(mod.weight, 1 / 16))
    (user,) = conv.users
    assert passes.is_activation(gm, user)  # the pool's output becomes IF neurons
    functions = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert F.avg_pool2d not in functions and F.pad in functions  # the shortcut stays a linear op
    torch.testing.assert_close(gm(x), model(x), atol=1e-6, rtol=1e-5)


def test_option_a_resnet_snn_agrees_with_its_ann_at_large_T():
    # With max thresholds taken on the very inputs simulated, no activation is clipped and each IF
    # neuron's rate errs by at most about one spike in T, so the logits' error falls like c / T.
    # Measured: c = 2.2-2.3 (relative to the largest logit) for T = 32 ... 2048; we allow c = 4,
    # which T = 128 already breaks (relative error 0.0175 > 4 / 1024). The smallest top-2 logit
    # gap is 26 % of the largest logit, far above the error, so the argmax must not change.
    model = randomize_bn(OptionAResNet())
    x = torch.rand(32, 3, 8, 8)
    with torch.no_grad():
        ann = model(x)
    outs = {
        T: snncal.convert(model, x, T=T, threshold="max", max_batch=4096)(x) for T in (128, 1024)
    }
    errors = {T: ((out - ann).abs().max() / ann.abs().max()).item() for T, out in outs.items()}
    assert errors[1024] < 4 / 1024 < errors[128]
    assert errors[128] / errors[1024] > 5  # ~1/T: 8x the steps, about 8x less error
    assert torch.equal(outs[1024].argmax(1), ann.argmax(1))


class _Head(nn.Module):
    """conv -> relu -> linear sized for 32 x 32 inputs."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 32 * 32, 5)

    def forward(self, x):
        return self.fc(F.relu(self.c(x)).flatten(1))  # the line the shape error names


def test_wrong_input_shape_is_one_error_naming_the_node(capsys):
    with pytest.raises(ConversionError) as err:
        prepare(_Head(), torch.randn(2, 3, 16, 16))
    msg = str(err.value)
    assert msg.startswith("the model fails on an input of shape (2, 3, 16, 16) at node 'fc' (module Linear)")
    line = inspect.getsourcelines(_Head.forward)[1] + 1
    assert f"test_graph.py:{line} `return self.fc(F.relu(self.c(x)).flatten(1))" in msg
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x512 and 2048x5)" in msg
    assert "Pass inputs of the shape the model was trained on" in msg
    assert isinstance(err.value.__cause__, RuntimeError)
    assert capsys.readouterr().err == ""  # no shape-propagation traceback on the way
    prepare(_Head(), torch.randn(2, 3, 32, 32))  # the right shape converts


def test_a_pass_that_fails_at_a_node_names_it_and_keeps_the_cause(monkeypatch):
    def broken(*args):
        raise RuntimeError("fusion broke\nsecond line")

    monkeypatch.setattr(passes, "fuse_conv_bn_eval", broken)
    with pytest.raises(ConversionError) as err:
        prepare(randomize_bn(Plain()), torch.randn(2, 3, 8, 8))
    line = inspect.getsourcelines(Plain.forward)[1] + 1
    assert str(err.value) == (
        f"fold_bn failed at node 'features_1' (module BatchNorm2d) at {inspect.getfile(Plain)}:{line} "
        "`return self.fc(torch.flatten(self.features(x), 1))`: RuntimeError: fusion broke. "
        "fold that BatchNorm into its conv yourself "
        "(torch.nn.utils.fusion.fuse_conv_bn_eval), and please report this error to snncal with "
        "the model's forward()"
    )
    assert isinstance(err.value.__cause__, RuntimeError)


def test_a_pass_that_fails_outside_a_node_is_a_conversion_error(monkeypatch):
    def broken(gm):
        raise AssertionError("graph lint failed")

    monkeypatch.setattr(passes, "_finish", broken)
    with pytest.raises(ConversionError) as err:
        prepare(Plain(), torch.randn(2, 3, 8, 8))
    msg = str(err.value)
    assert msg.startswith("canonicalize_activations failed on the graph of Plain (at no single node)")
    assert "AssertionError: graph lint failed. write that activation as an nn.ReLU module" in msg
    assert isinstance(err.value.__cause__, AssertionError)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_double_precision_models_run_in_float32(dtype, caplog):
    model = randomize_bn(Plain()).to(dtype)
    x = torch.randn(4, 3, 8, 8)
    with caplog.at_level(logging.INFO, logger="snncal"):
        gm = prepare(model, x.to(dtype))
    name = str(dtype).removeprefix("torch.")
    assert f"converting a copy of Plain from {name} to float32" in caplog.text
    assert {t.dtype for t in gm.state_dict().values()} == {torch.float32}
    assert next(model.parameters()).dtype == dtype  # the user's model is untouched
    torch.testing.assert_close(gm(x), model.float()(x), atol=1e-5, rtol=1e-5)
    model.to(dtype)
    snn = snncal.convert(model, x, T=8, threshold="max", method="light", num_images=4)
    assert snn(x).dtype == torch.float32


def test_non_finite_weights_are_refused_by_name():
    model = randomize_bn(Plain())
    with torch.no_grad():
        model.fc.weight[0, :3] = float("nan")
        model.features[1].running_var[2] = float("inf")
    with pytest.raises(ConversionError) as err:
        prepare(model, torch.randn(2, 3, 8, 8))
    assert str(err.value) == (
        "Plain has weights that are not finite: parameter 'fc.weight' has 3 of 1280 values NaN "
        "or infinite; buffer 'features.1.running_var' has 1 of 8 values NaN or infinite. The "
        "checkpoint is broken (a diverged training run or a bad load): convert a checkpoint whose "
        "weights are all finite."
    )


class _Fn(nn.Module):
    """conv -> relu -> ``fn``: one construct under test after an activation."""

    def __init__(self, fn, norm: nn.Module | None = None):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = norm or nn.Identity()
        self.fn = fn

    def forward(self, x):
        return self.fn(F.relu(self.norm(self.c(x))))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.view(x.size(0), x.size(1) * x.size(2) * x.size(3)),  # was refused as "mul"
        lambda x: F.pad(x, (0, 0, 0, 0, x.size(1) // 2, x.size(1) // 2)),
        lambda x: F.avg_pool2d(x, kernel_size=x.shape[2:]),
        lambda x: F.adaptive_avg_pool2d(x, x.size(2) // 4),
    ],
)
def test_arguments_computed_from_sizes_convert_exactly(fn):
    model = _Fn(fn)
    x = torch.randn(2, 3, 8, 8)
    gm = prepare(model, x)
    torch.testing.assert_close(gm(x), model(x), atol=1e-6, rtol=1e-5)


def test_pools_sized_from_shapes_become_convs_of_that_size():
    x = torch.randn(2, 3, 8, 8)
    adaptive = prepare(_Fn(lambda x: F.adaptive_avg_pool2d(x, x.size(2) // 4)), x)
    assert [adaptive.get_submodule(n.target).kernel_size for n in _pool_convs(adaptive)] == [(4, 4)]
    maxpool = _Fn(lambda x: F.max_pool2d(x, x.size(3)))  # a global max pool
    gm = prepare(maxpool, x, maxpool_to_avgpool=True)
    assert [gm.get_submodule(n.target).kernel_size for n in _pool_convs(gm)] == [(8, 8)]
    torch.testing.assert_close(gm(x), F.relu(maxpool.c(x)).mean((2, 3), keepdim=True))


def test_functional_maxpool_keeps_ceil_mode_and_refuses_dilation():
    model = _Fn(lambda x: F.max_pool2d(x, 3, 2, 0, 1, True))
    x = torch.randn(2, 3, 8, 8)
    gm = prepare(model, x, maxpool_to_avgpool=True, convert_avgpool=False)
    torch.testing.assert_close(gm(x), F.avg_pool2d(F.relu(model.c(x)), 3, 2, 0, True))
    with pytest.raises(ConversionError) as err:
        prepare(_Fn(lambda x: F.max_pool2d(x, 2, dilation=2)), x, maxpool_to_avgpool=True)
    msg = str(err.value)
    assert msg.startswith("cannot turn node 'max_pool2d' (function max_pool2d) at ")
    assert "test_graph.py" in msg and "it is dilated (2)" in msg
    assert "build the model with average pooling (nn.AvgPool2d) and fine-tune it" in msg
    indices = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(ConversionError, match=r"node '_2' \(module MaxPool2d\) .*it returns indices"):
        prepare(indices, x, maxpool_to_avgpool=True)


@pytest.mark.parametrize(
    ("fn", "what", "advice"),
    [
        (lambda x: 2 / (x + 1), "function truediv", "only linear ops"),
        (lambda x: x // 2, "function floordiv", "only linear ops"),
        (lambda x: torch.div(x, 2, rounding_mode="floor"), "function div", "only linear ops"),
        (lambda x: torch.cat([x, x], -4), "function cat", "concatenate along channels (dim 1)"),
    ],
)
def test_division_by_data_and_batch_concat_are_refused(fn, what, advice):
    with pytest.raises(ConversionError) as err:
        prepare(_Fn(fn), torch.randn(2, 3, 8, 8))
    msg = str(err.value)
    assert msg.startswith("cannot convert node") and what in msg and advice in msg
    assert "test_graph.py" in msg


def test_batchnorm_without_running_statistics_is_refused():
    model = _Fn(lambda x: x, nn.BatchNorm2d(4, track_running_stats=False)).eval()
    with pytest.raises(ConversionError) as err:
        prepare(model, torch.randn(2, 3, 8, 8))
    msg = str(err.value)
    assert msg.startswith("cannot convert node 'norm' (module BatchNorm2d) at ")
    assert "normalises with each batch's statistics (track_running_stats=False)" in msg


def test_depthwise_conv_follows_the_example_dtype():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AvgPool2d(2)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    gm = avgpool_to_dwconv(passes.canonicalize_activations(trace(model)), x)
    (conv,) = _pool_convs(gm)
    assert gm.get_submodule(conv.target).weight.dtype == torch.float64
    torch.testing.assert_close(gm(x), model(x))
