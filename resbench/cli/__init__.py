"""The command line: each module parses its commands' options and calls the library, nothing else."""
from resbench.cli.main import app

__all__ = ["app"]
