"""Every row of the op table (snncal.core.graph.ops) in a tiny model: conversion accepts it, and the
network it gives can be saved, loaded, costed and exported to NIR (or NIR refuses it in one line)."""

from __future__ import annotations

import operator
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snncal
from snncal.core.graph import ops

# One use of each op on ``h`` ``[N, 4, 8, 8]`` (a conv's rectified output); ``m`` is the model, which
# holds the module ``m.op`` and the weights ``m.w1`` ``[4, 4, 3]``, ``m.w2`` ``[4, 4, 3, 3]``,
# ``m.w`` ``[5, 256]``.
EXAMPLES = {
    "operator.add": lambda m, h: h + h,
    "operator.sub": lambda m, h: h - 0.1,
    "operator.mul": lambda m, h: h * 0.5,
    "operator.truediv": lambda m, h: h / 2,
    "operator.floordiv": lambda m, h: h.view(h.size(0), h.size(1) // 2, -1),
    "operator.mod": lambda m, h: F.pad(h, (0, h.size(3) % 3)),
    "operator.neg": lambda m, h: h + -(h * 0.5),
    "operator.getitem": lambda m, h: h[:, :2],
    "getattr": lambda m, h: h.view(h.shape[0], -1),
    "torch.add": lambda m, h: torch.add(h, h),
    "torch.sub": lambda m, h: torch.sub(h, 0.1),
    "torch.mul": lambda m, h: torch.mul(h, 0.5),
    "torch.div": lambda m, h: torch.div(h, 2.0),
    "torch.mean": lambda m, h: torch.mean(h, dim=(2, 3), keepdim=True),
    "torch.cat": lambda m, h: torch.cat([h, h], 1),
    "torch.flatten": lambda m, h: torch.flatten(h, 1),
    "torch.reshape": lambda m, h: torch.reshape(h, (h.size(0), -1)),
    "torch.chunk": lambda m, h: torch.chunk(h, 2, 1)[0],
    "torch.split": lambda m, h: torch.split(h, 2, 1)[1],
    "torch.squeeze": lambda m, h: torch.squeeze(torch.unsqueeze(h, 2), 2),
    "torch.unsqueeze": lambda m, h: torch.squeeze(torch.unsqueeze(h, 2), 2),
    "torch.transpose": lambda m, h: torch.transpose(h, 2, 3),
    "torch.permute": lambda m, h: torch.permute(h, (0, 1, 3, 2)),
    "torch.nn.functional.pad": lambda m, h: F.pad(h, (1, 1, 1, 1)),
    "torch.nn.functional.avg_pool1d": lambda m, h: F.avg_pool1d(h.flatten(2), 2),
    "torch.nn.functional.avg_pool2d": lambda m, h: F.avg_pool2d(h, 2),
    "torch.nn.functional.adaptive_avg_pool1d": lambda m, h: F.adaptive_avg_pool1d(h.flatten(2), 4),
    "torch.nn.functional.adaptive_avg_pool2d": lambda m, h: F.adaptive_avg_pool2d(h, 2),
    "torch.nn.functional.linear": lambda m, h: F.linear(h.flatten(1), m.w),
    "torch.nn.functional.conv1d": lambda m, h: F.conv1d(h.flatten(2), m.w1),
    "torch.nn.functional.conv2d": lambda m, h: F.conv2d(h, m.w2, padding=1),
    "view": lambda m, h: h.view(h.size(0), -1),
    "reshape": lambda m, h: h.reshape(h.size(0), -1),
    "flatten": lambda m, h: h.flatten(1),
    "squeeze": lambda m, h: h.unsqueeze(2).squeeze(2),
    "unsqueeze": lambda m, h: h.unsqueeze(2).squeeze(2),
    "size": lambda m, h: h.view(h.size(0), -1),
    "dim": lambda m, h: h.flatten(h.dim() - 3),
    "contiguous": lambda m, h: h.contiguous(),
    "float": lambda m, h: h.float(),
    "clone": lambda m, h: h.clone(),
    "neg": lambda m, h: h + h.neg() * 0.5,
    "mean": lambda m, h: h.mean((2, 3)),
    "add": lambda m, h: h.add(h),
    "add_": lambda m, h: (h * 1.0).add_(0.5),
    "sub": lambda m, h: h.sub(0.1),
    "mul": lambda m, h: h.mul(0.5),
    "div": lambda m, h: h.div(2),
    "chunk": lambda m, h: h.chunk(2, 1)[0],
    "split": lambda m, h: h.split(2, 1)[0],
    "permute": lambda m, h: h.permute(0, 1, 3, 2),
    "transpose": lambda m, h: h.transpose(2, 3),
    "Conv1d": (nn.Conv1d(4, 4, 3), lambda m, h: m.op(h.flatten(2))),
    "Conv2d": (nn.Conv2d(4, 4, 3, padding=1), lambda m, h: m.op(h)),
    "Conv3d": (nn.Conv3d(4, 4, 1), lambda m, h: m.op(h.unsqueeze(2)).squeeze(2)),
    "Linear": (nn.Linear(256, 5), lambda m, h: m.op(h.flatten(1))),
    "BatchNorm1d": (nn.BatchNorm1d(4), lambda m, h: m.op(h.flatten(2))),
    "BatchNorm2d": (nn.BatchNorm2d(4), lambda m, h: m.op(h)),
    "BatchNorm3d": (nn.BatchNorm3d(4), lambda m, h: m.op(h.unsqueeze(2))),
    "AvgPool1d": (nn.AvgPool1d(2), lambda m, h: m.op(h.flatten(2))),
    "AvgPool2d": (nn.AvgPool2d(2), lambda m, h: m.op(h)),
    "AvgPool3d": (nn.AvgPool3d((1, 2, 2)), lambda m, h: m.op(h.unsqueeze(2))),
    "AdaptiveAvgPool1d": (nn.AdaptiveAvgPool1d(4), lambda m, h: m.op(h.flatten(2))),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d(2), lambda m, h: m.op(h)),
    "AdaptiveAvgPool3d": (nn.AdaptiveAvgPool3d((1, 2, 2)), lambda m, h: m.op(h.unsqueeze(2))),
    "Flatten": (nn.Flatten(), lambda m, h: m.op(h)),
    "Unflatten": (nn.Unflatten(1, (2, 2)), lambda m, h: m.op(h)),
    "Identity": (nn.Identity(), lambda m, h: m.op(h)),
    "ZeroPad1d": (nn.ZeroPad1d(1), lambda m, h: m.op(h.flatten(2))),
    "ZeroPad2d": (nn.ZeroPad2d(1), lambda m, h: m.op(h)),
    "ZeroPad3d": (nn.ZeroPad3d(1), lambda m, h: m.op(h.unsqueeze(2))),
    "ConstantPad1d": (nn.ConstantPad1d(1, 0.5), lambda m, h: m.op(h.flatten(2))),
    "ConstantPad2d": (nn.ConstantPad2d(1, 0.5), lambda m, h: m.op(h)),
    "ConstantPad3d": (nn.ConstantPad3d(1, 0.5), lambda m, h: m.op(h.unsqueeze(2))),
}


class _Net(nn.Module):
    """conv -> ReLU -> the op -> ReLU -> flatten -> linear."""

    def __init__(self, name: str) -> None:
        super().__init__()
        example = EXAMPLES[name]
        self.op, self.use = example if isinstance(example, tuple) else (nn.Identity(), example)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.w1 = nn.Parameter(torch.randn(4, 4, 3) * 0.3)
        self.w2 = nn.Parameter(torch.randn(4, 4, 3, 3) * 0.2)
        self.w = nn.Parameter(torch.randn(5, 256) * 0.1)
        self.head = nn.LazyLinear(5)

    def forward(self, x):
        h = self.use(self, F.relu(self.conv(x)))
        return self.head(F.relu(h).flatten(1))


def _holds(gm: torch.fx.GraphModule, op: ops.Op) -> bool:
    kinds = {"function": "call_function", "method": "call_method", "module": "call_module"}
    for node in gm.graph.nodes:
        if node.op != kinds[op.kind]:
            continue
        if op.kind == "module" and type(gm.get_submodule(node.target)) is op.target:
            return True
        if op.kind != "module" and node.target == op.target:
            return True
    return False


def test_every_op_has_an_example():
    assert set(EXAMPLES) == {op.name for op in ops.OPS}


@pytest.mark.parametrize("op", ops.OPS, ids=[op.name for op in ops.OPS])
def test_every_op_conversion_accepts_can_be_saved_loaded_costed_and_exported(op, tmp_path):
    torch.manual_seed(0)
    model = _Net(op.name)
    x = torch.rand(8, 3, 8, 8)
    model(x)  # sizes the lazy head
    model.eval()
    snn = snncal.convert(model, x, T=4, method="light", convert_avgpool=False, num_images=8)
    assert _holds(snn.graph, op), f"the example of {op.name} does not hold it after conversion"
    snncal.save(snn, tmp_path / "net")
    again = snncal.load(tmp_path / "net")
    torch.testing.assert_close(again.simulate(x), snn.simulate(x))
    cost = snncal.stats(again, x, max_images=4)
    assert cost.sops_per_image >= 0 and cost.ann_macs_per_image > 0
    pytest.importorskip("nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            snncal.export_nir(again, input_shape=[3, 8, 8])
        except snncal.ConversionError as err:  # NIR lacks the op, or this use of it (a shape)
            assert "\n" not in str(err) and "to NIR" in str(err)
        else:
            assert op.nir or op.role in ("size", "size_math"), f"{op.name} exported, yet marked nir=False"


def test_size_math_outside_the_table_is_refused_at_conversion():
    class Pow(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            h = F.relu(self.conv(x))
            return h.view(h.size(0), operator.pow(h.size(1), 2) // 4, -1).flatten(1)

    with pytest.raises(snncal.ConversionError, match="op table"):
        snncal.convert(Pow(), torch.rand(4, 3, 8, 8), T=4, method="none", num_images=4)
