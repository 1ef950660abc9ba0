"""Post-training calibration of a converted SNN (Li et al., ICML 2021), as methods built of steps.

One sweep walks the graph once; on every layer it runs the method's steps in order (a threshold
rule, then e.g. weight calibration, bias correction, potential correction), then simulates the
calibrated layer for the layers after it. ``light`` is MMSE thresholds + bias correction;
``advanced`` adds weight calibration and potential correction. Steps and methods are tables
(:mod:`snncal.core.calibrate.methods`) that :func:`register_step` and :func:`register_method` extend.
"""

from __future__ import annotations

from snncal.core.calibrate.layer import Layer
from snncal.core.calibrate.methods import (
    METHODS,
    NETWORK_STEPS,
    STEPS,
    Method,
    Step,
    get_method,
    register_method,
    register_step,
)
from snncal.core.calibrate.reports import CalibrationReport, LayerReport, LayerStats
from snncal.core.calibrate.run import run_steps
from snncal.core.calibrate.sweep import Sweep

__all__ = [
    "METHODS",
    "NETWORK_STEPS",
    "STEPS",
    "CalibrationReport",
    "Layer",
    "LayerReport",
    "LayerStats",
    "Method",
    "Step",
    "Sweep",
    "get_method",
    "register_method",
    "register_step",
    "run_steps",
]
