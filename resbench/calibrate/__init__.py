"""Calibration: a trainer with published numbers run unchanged on this data, to say what the data costs."""
