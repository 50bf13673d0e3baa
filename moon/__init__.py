"""MOON toolkit: product representation foundation models (train, export, index, score)."""

__version__ = "0.1.0"
