"""The machine resbench runs on: its facts, torchvision next to a CPU-only torch, files written whole."""
