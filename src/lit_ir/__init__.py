"""lit_ir: a PyTorch Lightning + Hydra experiment framework for neural ranking research."""

__version__ = "0.1.0"
