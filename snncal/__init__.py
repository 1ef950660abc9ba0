"""snncal: turn a trained CNN into an accurate, low-latency spiking neural network.

Conversion is a torch.fx graph rewrite (BN folding, ReLU -> integrate-and-fire neuron), thresholds
come from observers, and post-training calibration (Li et al., ICML 2021) corrects the conversion
error layer by layer. ``snncal.ann.models`` holds the model zoo.
"""

from snncal.core.config import ConvertConfig
from snncal.core.convert import calibrate, convert, observe, prepare, to_spiking
from snncal.core.engine import SpikingNetwork, simulate
from snncal.core.evaluate import evaluate
from snncal.core.export import load, save
from snncal.core.export.nir import export_nir
from snncal.core.graph import ConversionError
from snncal.core.neuron import IFNeuron, clip_floor
from snncal.core.stats import EnergyModel, NetworkStats, stats

__all__ = [
    "ConversionError",
    "ConvertConfig",
    "EnergyModel",
    "IFNeuron",
    "NetworkStats",
    "SpikingNetwork",
    "calibrate",
    "clip_floor",
    "convert",
    "evaluate",
    "export_nir",
    "load",
    "observe",
    "prepare",
    "save",
    "simulate",
    "stats",
    "to_spiking",
]
__version__ = "0.1.0"
