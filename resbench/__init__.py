"""resbench: a reproducibility benchmark for He et al., Deep Residual Learning (2015)."""
__version__ = "0.1.0"
