"""Evaluation of finished runs: the ImageNet test protocols (Sec. 3.4) and ensembles (Table 5)."""
