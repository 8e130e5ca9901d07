"""Instruments that look inside a model: complexity counters and BN-response hooks."""
