"""Networks whose calibrated state must not change bit for bit across refactors (see golden.json).

``python tests/golden.py`` records the cases not yet in golden.json from the current code; to change a
recorded digest, delete its line first: do that only when a change of the numbers is intended, and
say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from nets import Mixed, Plain, randomize_bn

import snncal

CASES = {
    "mixed-none-T8": ("mixed", dict(T=8, method="none")),
    "mixed-light-T8": ("mixed", dict(T=8, method="light")),
    "mixed-advanced-T8": ("mixed", dict(T=8, method="advanced", weight_iters=20)),
    "mixed-advanced-T16-per-layer": (
        "mixed", dict(T=16, method="advanced", per_channel=False, weight_iters=10)
    ),
    "plain-light-percentile-T8": ("plain", dict(T=8, method="light", threshold="percentile")),
    "plain-light-max-zero-reset-T8": ("plain", dict(T=8, method="light", threshold="max", reset="zero")),
    "plain-none-shift-T4": ("plain", dict(T=4, method="shift")),
    "mixed-spike_norm-T8": ("mixed", dict(T=8, method="spike_norm")),
    "mixed-rmp-T8": ("mixed", dict(T=8, method="rmp")),
    "mixed-tsc-T8": ("mixed", dict(T=8, method="tsc")),
    "mixed-opt-T8": ("mixed", dict(T=8, method="opt")),
    "plain-hybrid-T4": ("plain", dict(T=4, method="hybrid", hybrid_epochs=1, weight_batch=32)),
}
PATH = Path(__file__).with_name("golden.json")


def build(case: str) -> snncal.SpikingNetwork:
    net, kw = CASES[case]
    torch.manual_seed(0)
    model = randomize_bn(Mixed() if net == "mixed" else Plain())
    x = torch.rand(96, 3, 16, 16) if net == "mixed" else torch.rand(96, 3, 8, 8)
    if kw["method"] == "hybrid":  # it trains on labelled images
        x = torch.utils.data.TensorDataset(x, torch.arange(96) % 10)
    return snncal.convert(model, x, batch_size=32, **kw)


def digest(snn: snncal.SpikingNetwork) -> str:
    h = hashlib.sha256()
    for key, value in sorted(snn.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    for name, neuron in snn.neurons().items():  # settings that are attributes, not tensors
        h.update(f"{name} {neuron.reset} {neuron.shift} {neuron.ann_max}".encode())
    return h.hexdigest()[:20]


if __name__ == "__main__":
    torch.set_num_threads(1)
    recorded = json.loads(PATH.read_text()) if PATH.exists() else {}
    new = [case for case in CASES if case not in recorded]  # only cases added since: see the docstring
    PATH.write_text(json.dumps({**recorded, **{case: digest(build(case)) for case in new}}, indent=2) + "\n")
    print(PATH.read_text())
