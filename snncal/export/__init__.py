"""Export a converted network: safetensors + JSON checkpoints (NIR to come)."""

from .checkpoint import FORMAT, load_snn, read_snn_meta, save_snn

__all__ = ["FORMAT", "load_snn", "read_snn_meta", "save_snn"]
