"""fkdlib: a reproducible paper companion for face recognition and knowledge distillation."""

__version__ = "0.1.0"
