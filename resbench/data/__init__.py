"""Data readers and input pipelines. Here, what every reader shares and needs no torch: its error, and the
sizes of ImageNet's views (a recipe's, `resbench.paper.recipes`, without importing the image pipeline)."""
from dataclasses import dataclass


class DataError(Exception):
    """A problem with the user's data, reported as one line that says what to do."""


@dataclass(frozen=True)
class Views:
    """Sizes of the training crop and test views (the paper's by default; smoke runs shrink them)."""

    scale_min: int = 256  # shorter side, random in [scale_min, scale_max] (Sec. 3.4)
    scale_max: int = 480
    crop: int = 224  # training and test crop (Sec. 3.4)
    test_size: int = 256  # shorter side before the center crop / 10-crop (standard 10-crop)
    pca_std: float = 0.1  # std of AlexNet's colour-augmentation coefficients
