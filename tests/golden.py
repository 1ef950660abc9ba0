"""Networks whose calibrated state must not change across refactors (see golden.json).

What a case pins: for every tensor of the calibrated network, a fingerprint (sum, sum of absolute
values, Euclidean norm) of the tensor and of *what calibration changed in it*: the tensor minus the
same tensor of the converted network before calibration (``snncal.to_spiking`` of the prepared
ANN: BN folded, thresholds 1, initial potentials 0). Settings and shapes must match exactly, each
number within :data:`RTOL`. The tolerance is not float rounding: the same code gives different
roundings on different CPUs (bit-exact digests recorded on one machine failed on an AMD EPYC), a
different rounding can move a neuron across a ``floor`` step, and a network is discontinuous in
such steps. What it catches is every step: each step of each method, toggled off (made a no-op),
fails its case (``test_every_step_toggled_off_fails_its_golden``; all cases and steps with
``python tests/golden.py --toggles``), because a step that is skipped leaves its change at zero and
a weakened one (fewer iterations, a wrong sign) moves it by far more than 2 %.

``python tests/golden.py`` records the cases not yet in golden.json from the current code; to change a
recorded case, delete it first: do that only when a change of the numbers is intended, and say so in
the commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from nets import Mixed, Plain, randomize_bn

import snncal
from snncal.core.calibrate import NETWORK_STEPS, STEPS, Step, get_method

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
        "plain", dict(T=4, method="hybrid", hybrid_epochs=2, hybrid_lr=1e-2, hybrid_batch=32)
    ),
    "mixed-light+-T4": ("mixed", dict(T=4, method="light+")),
    "mixed-advanced+-T4": ("mixed", dict(T=4, method="advanced+", weight_iters=20)),
    "plain-tbias-T4": ("plain", dict(T=4, method="tbias")),
    "mixed-block-T4": ("mixed", dict(T=4, method="block", weight_iters=20)),
    "mixed-balanced-T8": ("mixed", dict(T=8, method="balanced")),
}
PATH = Path(__file__).with_name("golden.json")
RTOL = 2e-2


def build(case: str) -> tuple[snncal.SpikingNetwork, snncal.SpikingNetwork]:
    """The calibrated network of ``case`` and the same network converted but not calibrated."""
    net, kw = CASES[case]
    torch.manual_seed(0)
    model = randomize_bn(Mixed() if net == "mixed" else Plain())
    x = torch.rand(96, 3, 16, 16) if net == "mixed" else torch.rand(96, 3, 8, 8)
    if kw["method"] == "hybrid":  # it trains on a labelled training set apart from calibration
        kw = {**kw, "train_data": torch.utils.data.TensorDataset(torch.rand(64, 3, 8, 8),
                                                                 torch.arange(64) % 10)}
    snn = snncal.convert(model, x, batch_size=32, **kw)
    kw.pop("train_data", None)
    return snn, snncal.to_spiking(snncal.prepare(model, x[:32], batch_size=32, **kw), **kw)


def steps(case: str) -> tuple[str, ...]:
    """The steps of the case's method, per layer and on the whole network."""
    method = get_method(CASES[case][1]["method"])
    return method.steps + method.after


def _stats(x: torch.Tensor) -> list[float]:
    x = x.detach().cpu().double().flatten()
    return [float(x.sum()), float(x.abs().sum()), float(x.norm())]


def fingerprint(snn: snncal.SpikingNetwork, before: snncal.SpikingNetwork) -> dict[str, object]:
    """Per state tensor ``[shape, sum, sum |x|, norm]`` of the tensor and the same three of its
    change from ``before`` (float64), and each neuron's settings."""
    old = before.state_dict()
    found: dict[str, object] = {}
    for key, value in sorted(snn.state_dict().items()):
        change = value - old[key] if key in old and old[key].shape == value.shape else value
        found[key] = [list(value.shape), *_stats(value), *_stats(change)]
    found["neurons"] = [f"{name} {n.reset} {n.shift} {n.ann_max}" for name, n in snn.neurons().items()]
    return found


def _close(found: list[float], expected: list[float], floor: float) -> bool:
    """sum, sum |x|, norm within RTOL; the sum also within RTOL of sum |x| (it may cancel)."""
    (total, size, norm), (total0, size0, norm0) = found, expected
    return (
        math.isclose(total, total0, rel_tol=RTOL, abs_tol=RTOL * size0 + floor)
        and math.isclose(size, size0, rel_tol=RTOL, abs_tol=floor)
        and math.isclose(norm, norm0, rel_tol=RTOL, abs_tol=floor)
    )


def mismatches(found: dict[str, object], expected: dict[str, object]) -> list[str]:
    """What differs between two fingerprints beyond :data:`RTOL` (empty: they match)."""
    if found.keys() != expected.keys():
        return [f"keys: {sorted(found.keys() ^ expected.keys())}"]
    bad = [] if found["neurons"] == expected["neurons"] else ["neuron settings"]
    for key, value in found.items():
        if key == "neurons":
            continue
        shape, *stats = value
        shape0, *stats0 = expected[key]
        if shape != shape0:
            bad.append(f"{key}: shape {shape} != {shape0}")
        elif not _close(stats[:3], stats0[:3], 1e-12):
            bad.append(f"{key}: sum, |sum|, norm {stats[:3]} != {stats0[:3]}")
        elif not _close(stats[3:], stats0[3:], 1e-6 * stats0[1] + 1e-12):  # a change of a
            bad.append(f"{key}: its change by calibration {stats[3:]} != {stats0[3:]}")  # millionth is none
    return bad


def without(step: str):
    """The step table with ``step`` a no-op (for a ``monkeypatch.setitem`` or a ``with``)."""
    if step in NETWORK_STEPS:
        return NETWORK_STEPS, step, lambda *args: {}
    return STEPS, step, Step(lambda layer, cfg: None, STEPS[step].spikes)


def _toggles() -> int:
    """Every step of every case toggled off: print each and whether its golden caught it."""
    recorded, missed = json.loads(PATH.read_text()), 0
    for case in CASES:
        for step in steps(case):
            table, key, noop = without(step)
            table[key], kept = noop, table[key]
            try:
                caught = bool(mismatches(fingerprint(*build(case)), recorded[case]))
            finally:
                table[key] = kept
            missed += not caught
            print(f"{case:32s} without {step:12s} {'caught' if caught else 'MISSED'}", flush=True)
    return int(missed > 0)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:] == ["--toggles"]:
        sys.exit(_toggles())
    recorded = json.loads(PATH.read_text()) if PATH.exists() else {}
    new = [case for case in CASES if case not in recorded]  # only cases added since: see the docstring
    recorded.update({case: fingerprint(*build(case)) for case in new})
    cases = [  # one line per tensor, for readable diffs
        f" {json.dumps(case)}: {{\n"
        + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in fp.items())
        for case, fp in recorded.items()
    ]
    PATH.write_text("{\n" + "\n },\n".join(cases) + "\n }\n}\n")
    print(f"recorded {new} in {PATH}")
