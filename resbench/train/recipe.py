"""Training recipes: the paper's values as the defaults of small frozen dataclasses."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class CifarRecipe:
    """CIFAR-10 training, Sec. 4.2 of the paper unless a comment says otherwise."""

    batch_size: int = 128  # images per SGD step (Sec. 4.2: mini-batch 128)
    bn_splits: int = 2  # BN statistics per 1/bn_splits of the batch: the paper's 2 GPUs x 64
    lr: float = 0.1  # initial learning rate (Sec. 4.2)
    momentum: float = 0.9  # SGD momentum (Sec. 4.2)
    weight_decay: float = 1e-4  # L2, on every parameter (Sec. 4.2)
    milestones: tuple[int, ...] = (32_000, 48_000)  # iterations where lr is divided (Sec. 4.2)
    lr_decay: float = 0.1  # factor applied at each milestone ("divide it by 10")
    iterations: int = 64_000  # SGD steps in total, ~164 epochs of 50k (Sec. 4.2)
    warmup: bool = False  # ResNet-110/1202: lr warmup_lr until training error < warmup_until
    warmup_lr: float = 0.01  # (Sec. 4.2, footnote: "about 400 iterations")
    warmup_until: float = 80.0  # training error (%) below which the warm-up ends
    warmup_window: int = 10  # iterations whose training error is checked against warmup_until
    val_split: bool = False  # train on 45k, test on the 5k val split (schedule selection)
    test_subset: int | None = None  # evaluate on a stratified subset of this many test images
    log_every: int = 100  # iterations between training loss/error records
    eval_every: int = 1_000  # iterations between test-error evaluations (Fig. 1/6 curves)
    checkpoint_every: int = 2_000  # iterations between checkpoints

    # bn_splits: the paper trained on two GPUs, so BN normalised each half-batch of 64 on
    # its own. That is the default, being the paper's; bn_splits=1 normalises the whole
    # batch of 128 (one GPU, as most re-implementations do). The split batch runs as
    # bn_splits forwards in one step, so BN's running averages get bn_splits updates per
    # iteration, where each of the paper's GPUs got one.

    def validate(self) -> "CifarRecipe":
        problems = []
        if self.batch_size < 1 or self.iterations < 1:
            problems.append("batch_size and iterations must be positive")
        if self.bn_splits < 1 or self.batch_size % self.bn_splits:
            problems.append(f"bn_splits ({self.bn_splits}) must divide batch_size ({self.batch_size})")
        if not (self.lr > 0 and self.warmup_lr > 0):
            problems.append(f"learning rates must be positive (lr={self.lr}, warmup_lr={self.warmup_lr})")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            problems.append("momentum must be in [0, 1) and weight_decay >= 0")
        if list(self.milestones) != sorted(self.milestones) or any(m <= 0 for m in self.milestones):
            problems.append(f"milestones must be increasing positive iterations, got {self.milestones}")
        if not 0 < self.lr_decay <= 1 or not 0 < self.warmup_until <= 100:
            problems.append("lr_decay must be in (0, 1] and warmup_until in (0, 100] (%)")
        if min(self.log_every, self.eval_every, self.checkpoint_every, self.warmup_window) < 1:
            problems.append("log_every, eval_every, checkpoint_every and warmup_window must be >= 1")
        if self.test_subset is not None and self.test_subset < 10:
            problems.append("test_subset must be at least 10 images (one per class)")
        if problems:
            raise ValueError("invalid recipe: " + "; ".join(problems))
        return self

    def lr_at(self, iteration: int, warming_up: bool = False) -> float:
        """Learning rate of step `iteration` (0-based): step decay at the milestones."""
        if warming_up:
            return self.warmup_lr
        return round(self.lr * self.lr_decay ** sum(iteration >= m for m in self.milestones), 12)

    def with_options(self, **options) -> "CifarRecipe":
        unknown = set(options) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown recipe options {sorted(unknown)}; known: {', '.join(asdict(self))}")
        if "milestones" in options:
            options["milestones"] = tuple(options["milestones"])
        return replace(self, **options).validate()


# Smoke: a tiny but real run (real data, real model, the same code path) that finishes on
# a 2-core CPU in seconds per model. Its numbers only show that everything works.
PRESETS: dict[str, CifarRecipe] = {
    "paper": CifarRecipe(),
    "smoke": CifarRecipe(batch_size=32, iterations=60, milestones=(40, 50),
                         log_every=10, eval_every=30, checkpoint_every=30, test_subset=1000),
}


def cifar_recipe(preset: str = "paper", **options) -> CifarRecipe:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset].with_options(**options)
