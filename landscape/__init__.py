"""Safety-landscape analysis and safety-preserving fine-tuning (AsFT)."""

__version__ = "0.1.0"
