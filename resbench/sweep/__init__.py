"""Sweeps: from a declared experiment to planned runs, trained here, in worker processes or as Slurm tasks."""
