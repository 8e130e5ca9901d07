"""Declarations of the paper's tables and figures, one TOML file each (read by resbench.experiments)."""
