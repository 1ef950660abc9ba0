"""Post-training calibration of a converted SNN (filled in by the calibration pipeline)."""
