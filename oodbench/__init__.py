"""oodbench: a plugin-based benchmark harness for OOD generalization under spurious correlations."""

from oodbench.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl", "hookspec"]
