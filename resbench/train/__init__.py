"""Training: the one loop and its drivers (one run, seeds fused, K runs packed, ImageNet data-parallel),
the step and how it runs on the hardware."""
