"""Measuring on a real machine: timing backends and the drift reference kernel (``backends``),
host fingerprints (``host``), per-op profiling (``profile``), whole-network measurement
(``networks``), calibration (``calibrate``), few-shot adaptation to this host (``adapt``) and
validation (``validate``)."""
