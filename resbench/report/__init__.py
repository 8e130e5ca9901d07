"""Reports: our runs diffed against the paper, as tables, figures and verdicts."""
from .core import Report

__all__ = ["Report"]
