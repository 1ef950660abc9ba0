"""Networks whose calibrated state must not change across refactors (see golden.json).

golden.json holds, per case, a fingerprint of every tensor of the calibrated network (sum, sum of
absolute values, Euclidean norm) and each neuron's settings. Settings and shapes must match exactly,
the numbers within :data:`RTOL`: the same code and torch give different float rounding on different
CPUs (bit-exact digests recorded on one machine failed on an AMD EPYC), and a rounding change may
move one neuron across a ``floor`` step, which moves an element-wise potential by ``Vth / T``. A
step skipped, doubled or of the wrong sign moves the fingerprints by far more.

``python tests/golden.py`` records the cases not yet in golden.json from the current code; to change a
recorded case, delete it first: do that only when a change of the numbers is intended, and say so in
the commit.
"""

from __future__ import annotations

import json
import math
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
    "plain-hybrid-T4": (
        "plain", dict(T=4, method="hybrid", hybrid_epochs=2, hybrid_lr=1e-2, weight_batch=32)
    ),
}
PATH = Path(__file__).with_name("golden.json")


def build(case: str) -> snncal.SpikingNetwork:
    net, kw = CASES[case]
    torch.manual_seed(0)
    model = randomize_bn(Mixed() if net == "mixed" else Plain())
    x = torch.rand(96, 3, 16, 16) if net == "mixed" else torch.rand(96, 3, 8, 8)
    if kw["method"] == "hybrid":  # it trains on a labelled training set apart from calibration
        train = torch.utils.data.TensorDataset(torch.rand(64, 3, 8, 8), torch.arange(64) % 10)
        return snncal.convert(model, x, batch_size=32, train_data=train, **kw)
    return snncal.convert(model, x, batch_size=32, **kw)


RTOL = 2e-2


def fingerprint(snn: snncal.SpikingNetwork) -> dict[str, object]:
    """Per state tensor ``[shape, sum, sum |x|, norm]`` (float64), and each neuron's settings."""
    found: dict[str, object] = {}
    for key, value in sorted(snn.state_dict().items()):
        x = value.detach().cpu().double().flatten()
        found[key] = [list(value.shape), float(x.sum()), float(x.abs().sum()), float(x.norm())]
    found["neurons"] = [f"{name} {n.reset} {n.shift} {n.ann_max}" for name, n in snn.neurons().items()]
    return found


def mismatches(found: dict[str, object], expected: dict[str, object]) -> list[str]:
    """What differs between two fingerprints beyond :data:`RTOL` (empty: they match)."""
    if found.keys() != expected.keys():
        return [f"keys: {sorted(found.keys() ^ expected.keys())}"]
    bad = [] if found["neurons"] == expected["neurons"] else ["neuron settings"]
    for key, value in found.items():
        if key == "neurons":
            continue
        shape, total, size, norm = value
        shape0, total0, size0, norm0 = expected[key]
        if shape != shape0:
            bad.append(f"{key}: shape {shape} != {shape0}")
        elif not (
            math.isclose(total, total0, rel_tol=RTOL, abs_tol=RTOL * size0 + 1e-12)
            and math.isclose(size, size0, rel_tol=RTOL, abs_tol=1e-12)
            and math.isclose(norm, norm0, rel_tol=RTOL, abs_tol=1e-12)
        ):
            bad.append(f"{key}: sum, |sum|, norm {total:.6g}, {size:.6g}, {norm:.6g} "
                       f"!= {total0:.6g}, {size0:.6g}, {norm0:.6g}")
    return bad


if __name__ == "__main__":
    torch.set_num_threads(1)
    recorded = json.loads(PATH.read_text()) if PATH.exists() else {}
    new = [case for case in CASES if case not in recorded]  # only cases added since: see the docstring
    recorded.update({case: fingerprint(build(case)) for case in new})
    cases = [  # one line per tensor, for readable diffs
        f" {json.dumps(case)}: {{\n"
        + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in fp.items())
        for case, fp in recorded.items()
    ]
    PATH.write_text("{\n" + "\n },\n".join(cases) + "\n }\n}\n")
    print(f"recorded {new} in {PATH}")
