"""Training recipes: the paper's values as the defaults of small frozen dataclasses."""
from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

from resbench.data import Views


class Options:
    """`recipe.with_options(lr=0.05)`: a validated copy with some fields changed."""

    def with_options(self, **options):
        unknown = set(options) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown recipe options {sorted(unknown)}; known: {', '.join(asdict(self))}")
        hints = typing.get_type_hints(type(self))
        for name, value in options.items():
            if not _is_a(value, hints[name]):
                raise ValueError(f"recipe option {name} takes {_kind(hints[name])}, got {value!r}")
        if "milestones" in options:
            options["milestones"] = tuple(options["milestones"])
        return replace(self, **options).validate()


def _is_a(value, hint) -> bool:
    """Whether `value` (e.g. parsed from --set) fits a recipe field's type: an int is a number, a bool no int."""
    if isinstance(hint, types.UnionType):
        return any(_is_a(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(_is_a(v, typing.get_args(hint)[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return value is None if hint is type(None) else isinstance(value, hint)


def _kind(hint) -> str:
    """A field's type in words: 'a number', 'a list of whole numbers', 'a whole number or null'."""
    if isinstance(hint, types.UnionType):
        return " or ".join(_kind(h) for h in typing.get_args(hint)).replace(" or a null", " or null")
    if typing.get_origin(hint) is tuple:
        return "a list of " + _kind(typing.get_args(hint)[0]).replace("a ", "", 1).replace("number", "numbers")
    return {float: "a number", int: "a whole number", bool: "true or false", str: "a string",
            type(None): "a null"}[hint]


@dataclass(frozen=True)
class CifarRecipe(Options):
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

    def with_budget(self, budget: Fraction) -> "CifarRecipe":
        """This recipe compressed to `budget` of its iterations (a budget tier, never the paper's result).

        Iterations and lr milestones are multiplied by the budget, so the schedule keeps its
        shape: two drops by 10, at 1/2 and 3/4 of training. The warm-up rule (ResNet-110/1202:
        lr 0.01 until training error < 80%) is a rule on the error, not on a length, and stays.
        The test evaluations keep the recipe's cadence, or 16 per run where that gives fewer
        (a curve of Fig. 1/6 needs points), with a checkpoint at each and 10 training records
        between them; the cadence is not part of a run's identity.
        """
        if budget == 1:
            return self
        iterations = max(1, round(self.iterations * budget))
        milestones = tuple(max(1, round(m * budget)) for m in self.milestones)
        eval_every = max(1, min(self.eval_every, iterations // 16))
        return replace(self, iterations=iterations, milestones=milestones, eval_every=eval_every,
                       log_every=max(1, min(self.log_every, eval_every // 10)),
                       checkpoint_every=max(1, min(self.checkpoint_every, eval_every))).validate()


def parse_budget(text: str | Fraction | int) -> Fraction:
    """'1/32' -> Fraction(1, 32): the share of the recipe's iterations a budget run trains, in (0, 1]."""
    try:
        budget = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--budget takes a fraction of the paper's schedule such as 1/32, got {text!r}") from None
    if not 0 < budget <= 1:
        raise ValueError(f"--budget must be in (0, 1] (a share of the paper's schedule, e.g. 1/32), got {text}")
    return budget


def budget_label(budget: Fraction) -> str:
    """1/32 -> '1of32': how a budget shows in a run directory's name ('' for the full schedule)."""
    return "" if budget == 1 else f"{budget.numerator}of{budget.denominator}"


# Shorter presets, for a machine without a GPU. Their numbers are never compared with the
# paper's; reports say which preset a run used.
#   demo:  the paper's batch (128, BN per 64) and learning rate for 200 iterations, tested on a
#          stratified 1,000-image subset: ResNet-20 visibly learns on a 2-core CPU in about a
#          minute (`make demo`).
#   smoke: the fastest real run (real data, real model, the same code path), for tests. Its
#          batch is a quarter of the paper's, so its lr is too (the linear scaling rule):
#          at lr 0.1 and batch 32 the deeper nets diverged.
PRESETS: dict[str, CifarRecipe] = {
    "paper": CifarRecipe(),
    "demo": CifarRecipe(iterations=200, milestones=(150,), log_every=10, eval_every=50,
                        checkpoint_every=100, test_subset=1000),
    "smoke": CifarRecipe(batch_size=32, lr=0.025, iterations=60, milestones=(40, 50),
                         log_every=10, eval_every=30, checkpoint_every=30, test_subset=1000),
}


def cifar_recipe(preset: str = "paper", **options) -> CifarRecipe:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset].with_options(**options)


@dataclass(frozen=True)
class ImageNetRecipe(Options):
    """ImageNet training, Sec. 3.4 of the paper unless a comment says otherwise."""

    batch_size: int = 256  # global mini-batch, over all processes (Sec. 3.4)
    bn_group: int = 32  # images per BN statistics group: the paper's 8 GPUs x 32
    lr: float = 0.1  # initial learning rate (Sec. 3.4)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    iterations: int = 600_000  # "up to 60 x 10^4 iterations" (Sec. 3.4)
    schedule: str = "plateau"  # plateau: lr / 10 when the val error plateaus (the paper); steps: at milestones
    plateau_patience: int = 2  # evaluations without improvement before lr / 10 (the paper gives no number)
    plateau_threshold: float = 0.2  # improvement (percentage points of top-1 error) that counts
    milestones: tuple[int, ...] = (150_000, 300_000, 450_000)  # for schedule "steps" (not the paper's)
    lr_decay: float = 0.1  # "divided by 10"
    scale_min: int = 256  # shorter side, random in [scale_min, scale_max] (Sec. 3.4)
    scale_max: int = 480
    crop: int = 224  # training crop and test crop (Sec. 3.4)
    test_size: int = 256  # shorter side before center crop and 10-crop
    pca_std: float = 0.1  # AlexNet colour augmentation (Sec. 3.4, [21])
    val_limit: int | None = None  # evaluate on the first N val images during training (None: all)
    log_every: int = 100  # iterations between training records
    eval_every: int = 5_000  # iterations between center-crop validation (Fig. 4 curves, plateau)
    checkpoint_every: int = 5_000

    def validate(self) -> "ImageNetRecipe":
        problems = []
        if self.batch_size < 1 or self.iterations < 1 or self.bn_group < 1 or self.batch_size % self.bn_group:
            problems.append(f"batch_size ({self.batch_size}) must be a positive multiple of bn_group "
                            f"({self.bn_group}), iterations positive")
        if not self.lr > 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            problems.append("lr must be positive, momentum in [0, 1), weight_decay >= 0")
        if self.schedule not in ("plateau", "steps"):
            problems.append(f"schedule must be plateau or steps, got {self.schedule!r}")
        if not self.crop <= self.scale_min <= self.scale_max or self.test_size < self.crop:
            problems.append(f"need crop <= scale_min <= scale_max and crop <= test_size "
                            f"({self.crop}, {self.scale_min}, {self.scale_max}, {self.test_size})")
        if min(self.log_every, self.eval_every, self.checkpoint_every, self.plateau_patience) < 1:
            problems.append("log_every, eval_every, checkpoint_every and plateau_patience must be >= 1")
        if problems:
            raise ValueError("invalid recipe: " + "; ".join(problems))
        return self

    def views(self):
        return Views(self.scale_min, self.scale_max, self.crop, self.test_size, self.pca_std)

    def step_lr(self, iteration: int) -> float:
        """The "steps" schedule's learning rate at `iteration`."""
        return round(self.lr * self.lr_decay ** sum(iteration >= m for m in self.milestones), 12)


IMAGENET_PRESETS: dict[str, ImageNetRecipe] = {
    "paper": ImageNetRecipe(),
    # small images and a few iterations: shows the whole path works on a 2-core CPU in about a minute
    "smoke": ImageNetRecipe(batch_size=16, bn_group=8, iterations=8, scale_min=64, scale_max=96, crop=56,
                            test_size=64, schedule="steps", milestones=(6,), log_every=2, eval_every=4,
                            checkpoint_every=4, val_limit=20),
}


def imagenet_recipe(preset: str = "paper", **options) -> ImageNetRecipe:
    if preset not in IMAGENET_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(IMAGENET_PRESETS)}")
    return IMAGENET_PRESETS[preset].with_options(**options)
