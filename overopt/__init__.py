"""overopt: reward-model over-optimization scaling studies. This package holds the command line only."""

__version__ = "0.1.0"
