"""Bench: throughput measurements, each with its contenders side by side in one run, and the machine profile."""
