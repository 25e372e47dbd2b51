"""catdog-report: a reproducible report site for four Keras models on cats and dogs photos."""

__version__ = "0.1.0"
