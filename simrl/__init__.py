"""simrl: train control policies in domain-randomized MuJoCo, rank checkpoints, run them on robots."""

__version__ = "0.1.0"
