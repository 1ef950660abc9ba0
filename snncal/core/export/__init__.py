"""Export a converted network: self-describing SNN files (safetensors + JSON), and NIR graphs."""

from snncal.core.export.checkpoint import FORMAT, load, read_meta, save
from snncal.core.export.nir import export_nir

__all__ = ["FORMAT", "export_nir", "load", "read_meta", "save"]
