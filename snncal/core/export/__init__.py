"""Export a converted network: self-describing SNN files (safetensors + JSON), NIR to come."""

from snncal.core.export.checkpoint import FORMAT, load, read_meta, save

__all__ = ["FORMAT", "load", "read_meta", "save"]
