"""Export a converted network: safetensors + JSON checkpoints, and NIR graphs."""

from snncal.core.export.checkpoint import FORMAT, load_snn, read_snn_meta, save_snn
from snncal.core.export.nir import export_nir

__all__ = ["FORMAT", "export_nir", "load_snn", "read_snn_meta", "save_snn"]
