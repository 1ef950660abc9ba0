"""Export a converted network: safetensors + JSON checkpoints (NIR to come)."""

from snncal.core.export.checkpoint import FORMAT, load_snn, read_snn_meta, save_snn

__all__ = ["FORMAT", "load_snn", "read_snn_meta", "save_snn"]
