"""Table 5: finished ImageNet runs tested alone and as an ensemble (`resbench ensemble RUN_DIR...`)."""
from __future__ import annotations

from pathlib import Path

from resbench.data.imagenet import ImageFolderData
from resbench.evaluation.imagenet import ensemble_scores, errors, val_scores
from resbench.models import build_model
from resbench.runs.rundir import is_run_dir, read_config, read_summary
from resbench.runs.checkpoint import load_checkpoint
from resbench.paper.recipes import ImageNetRecipe


def ensemble_of_runs(run_dirs: list[Path], data: ImageFolderData, engine, mode: str = "multiscale",
                     workers: int = 4) -> dict:
    """Table 5: test finished ImageNet runs one by one and together (their softmax averaged)."""
    members, scores, labels = [], [], None
    for run_dir in map(Path, run_dirs):
        if not is_run_dir(run_dir):
            raise ValueError(f"{run_dir} is not a run directory (no config.json)")
        config, summary = read_config(run_dir), read_summary(run_dir)
        if summary.get("status") != "done" or "bn_group" not in config.get("recipe", {}):
            raise ValueError(f"{run_dir} is not a finished ImageNet run")
        if config["data"]["variant"] != data.variant:
            raise ValueError(f"{run_dir} trained on {config['data']['variant']}, not {data.variant}: "
                             "an ensemble takes runs of one data variant")
        recipe = ImageNetRecipe(**{**config["recipe"], "milestones": tuple(config["recipe"]["milestones"])})
        model = build_model(config["model"]).to(engine.device)
        model.load_state_dict(load_checkpoint(run_dir, engine.device)["model"])
        member_scores, labels = val_scores(model, data, recipe.views(), engine, mode, workers=workers)
        members.append({"run": run_dir.name, "model": config["model"], **errors(member_scores, labels)})
        scores.append(member_scores)
    if not scores:
        raise ValueError("an ensemble needs at least one run directory")
    return {"test": mode, "data_variant": data.variant, "members": members,
            **errors(ensemble_scores(scores), labels)}
