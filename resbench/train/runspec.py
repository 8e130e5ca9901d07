"""What determines a training run's result, as the runner plans it and its run directory records it.

A run is a network, a recipe, a seed and the labels that say where they came from (the preset,
the row's options, --set overrides). `config` is what config.json holds; the run's key hashes
the part of it that determines the result (`resbench.runs.rundir.identity`). `Schedule`: when a run
logs, tests and checkpoints, from its recipe.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

from resbench.train.engine import Engine
from resbench.paper.recipes import CifarRecipe, ImageNetRecipe, budget_label


@dataclass(frozen=True)
class RunSpec:
    model: str
    recipe: CifarRecipe | ImageNetRecipe
    seed: int
    preset: str = "paper"
    options: tuple[tuple[str, object], ...] = ()  # the recipe options the row asked for (the paper's)
    overrides: tuple[tuple[str, object], ...] = ()  # --set options: departures from the paper's recipe

    def config(self, data, engine: Engine) -> dict:
        return {"model": self.model, "preset": self.preset, "seed": self.seed, "options": dict(self.options),
                "overrides": dict(self.overrides), "recipe": asdict(self.recipe), "data": self.data_config(data),
                **engine.arithmetic}

    def data_config(self, data) -> dict:
        raise NotImplementedError

    @property
    def schedule(self) -> str:
        """How the run directory's name says the schedule: the preset (and a budget, below)."""
        return self.preset


@dataclass(frozen=True)
class CifarRun(RunSpec):
    """A CIFAR-10 run (Sec. 4.2)."""

    recipe: CifarRecipe
    budget: Fraction = Fraction(1)  # share of the preset's schedule that `recipe` trains (a budget tier)

    def config(self, data, engine: Engine) -> dict:
        return {**super().config(data, engine), "budget": str(self.budget)}

    def data_config(self, data) -> dict:
        return {"variant": data.variant, "sha256": data.sha256, "split": data.split}

    @property
    def schedule(self) -> str:
        return self.preset + (f"-{budget_label(self.budget)}" if self.budget != 1 else "")


@dataclass(frozen=True)
class ImageNetRun(RunSpec):
    """An ImageNet run (Sec. 3.4). No test protocol: a network is trained once and its final checkpoint
    tested with every protocol, so Tables 2-4 and Fig. 4 share runs and each reads the one it reports."""

    recipe: ImageNetRecipe

    def data_config(self, data) -> dict:
        return {"variant": data.variant, "source": data.root, "train": len(data.train), "val": len(data.val),
                "split": "train/val"}


@dataclass(frozen=True)
class Due:
    log: bool
    eval: bool
    checkpoint: bool
    last: bool

    @property
    def any(self) -> bool:
        return self.log or self.eval or self.checkpoint


@dataclass(frozen=True)
class Schedule:
    """When a run logs, tests and checkpoints (every N iterations, and at its last)."""

    iterations: int
    log_every: int
    eval_every: int
    checkpoint_every: int

    @classmethod
    def of(cls, recipe) -> "Schedule":
        return cls(recipe.iterations, recipe.log_every, recipe.eval_every, recipe.checkpoint_every)

    def after(self, done: int) -> Due:
        """What is due once `done` iterations are done."""
        last = done == self.iterations
        return Due(*(last or done % every == 0 for every in (self.log_every, self.eval_every, self.checkpoint_every)),
                   last)
