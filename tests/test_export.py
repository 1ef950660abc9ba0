"""SNN checkpoints: save -> load gives the same network, bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from nets import randomize_bn

import snncal
import snncal.ann.models as zoo
import snncal.app.quickstart
from snncal.core.export import load_snn, read_snn_meta, save_snn


def _meta(arch: str, **kw) -> dict:
    return {"arch": arch, "num_classes": 5, "width": 0.25, "model_kwargs": kw,
            "normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}}


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("resnet20_he", {"method": "advanced", "per_channel": True, "weight_iters": 5}),
        ("cnn_small", {"method": "light", "threshold": "max", "reset": "zero"}),
    ],
)
def test_round_trip_gives_identical_outputs(tmp_path, arch, options) -> None:
    meta = _meta(arch)
    model = randomize_bn(zoo.create(arch, 5, 0.25, mean=meta["normalize"]["mean"],
                                    std=meta["normalize"]["std"]))
    x = torch.rand(24, 3, 32, 32)
    cfg = snncal.ConvertConfig(T=8, num_images=24, batch_size=12, **options)
    snn = snncal.convert(model, x, cfg)
    path = save_snn(tmp_path / "snn", snn, meta, cfg, input_shape=[3, 32, 32], extra={"note": "hi"})
    assert path.name == "snn.safetensors" and (tmp_path / "snn.json").exists()

    loaded = load_snn(tmp_path / "snn")
    assert loaded.T == 8 and loaded.encoding == "direct"
    assert snn.state_dict().keys() == loaded.state_dict().keys()
    for key, value in snn.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    torch.testing.assert_close(loaded.simulate(x, every_step=True), snn.simulate(x, every_step=True),
                               rtol=0, atol=0)
    torch.testing.assert_close(loaded.ann(x), snn.ann(x), rtol=0, atol=0)
    assert loaded.calibration == snn.calibration
    for name, neuron in snn.neurons().items():
        other = loaded.neurons()[name]
        assert (other.reset, other.shift, other.ann_max) == (neuron.reset, neuron.shift, neuron.ann_max)

    side = json.loads((tmp_path / "snn.json").read_text())
    assert side == read_snn_meta(tmp_path / "snn.safetensors")
    assert side["config"] == cfg.to_dict() and side["note"] == "hi"
    assert side["ann"]["arch"] == arch and side["input_shape"] == [3, 32, 32]


def test_load_rejects_an_ann_checkpoint(tmp_path) -> None:
    from snncal.ann.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ann", zoo.create("cnn_small", 5, 0.25), _meta("cnn_small"))
    with pytest.raises(ValueError, match="not an SNN checkpoint"):
        load_snn(tmp_path / "ann")
    with pytest.raises(FileNotFoundError):
        load_snn(tmp_path / "missing")
