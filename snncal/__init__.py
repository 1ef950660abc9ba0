"""snncal: turn a trained CNN into an accurate, low-latency spiking neural network.

Conversion is a torch.fx graph rewrite (BN folding, ReLU -> integrate-and-fire neuron), thresholds
come from observers, and post-training calibration (Li et al., ICML 2021) corrects the conversion
error layer by layer. ``snncal.models`` holds the model zoo.
"""

from .convert import ConvertConfig, convert
from .evaluate import evaluate
from .graph import ConversionError
from .neuron import IFNeuron, clip_floor
from .simulate import SpikingNetwork, simulate

__all__ = [
    "ConversionError",
    "ConvertConfig",
    "IFNeuron",
    "SpikingNetwork",
    "clip_floor",
    "convert",
    "evaluate",
    "simulate",
]
__version__ = "0.1.0"
