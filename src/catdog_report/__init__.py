"""catdog-report: a reproducible ML-report site generator for a study declared in study.yml."""

__version__ = "0.1.0"
