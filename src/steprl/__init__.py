"""steprl: STEP and its baselines for GUI agents, on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
