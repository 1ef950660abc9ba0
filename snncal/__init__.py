"""snncal: turn a trained CNN into an accurate, low-latency spiking neural network.

Conversion is a torch.fx graph rewrite (BN folding, ReLU -> integrate-and-fire neuron), thresholds
come from observers, and post-training calibration (Li et al., ICML 2021) corrects the conversion
error layer by layer. ``snncal.ann.models`` holds the model zoo.
"""

from snncal.core.config import ConvertConfig
from snncal.core.convert import convert
from snncal.core.engine import SpikingNetwork, simulate
from snncal.core.evaluate import evaluate
from snncal.core.export import load, save
from snncal.core.graph import ConversionError
from snncal.core.neuron import IFNeuron, clip_floor

__all__ = [
    "ConversionError",
    "ConvertConfig",
    "IFNeuron",
    "SpikingNetwork",
    "clip_floor",
    "convert",
    "evaluate",
    "load",
    "save",
    "simulate",
]
__version__ = "0.1.0"
