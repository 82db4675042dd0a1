"""Run a recipe's stages in order over its run folder, skipping the finished ones.

A stage is finished when its marker `stages/<name>.json` holds the fingerprint of the
recipe fields that decide its result; change the recipe and the stage runs again. A
training stage that was interrupted resumes from its newest checkpoint.
"""

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distil.checkpoint import checkpoint_fingerprint, list_checkpoints
from distil.evaluate import evaluate
from distil.fsutil import atomic_write_json
from distil.progress import console
from distil.recipe import Recipe
from distil.train import recipe_fingerprint, train


@dataclass(frozen=True)
class Stage:
    """One step of a run: a name, what it does, and the outputs `--force` clears."""

    name: str
    run: Callable[[Recipe], Any]
    outputs: tuple[str, ...] = ()


def train_stage(recipe: Recipe) -> None:
    """Train, resuming checkpoints of this recipe; checkpoints of another recipe are cleared."""
    found = list_checkpoints(recipe.run_dir / "checkpoints")
    resume = bool(found) and checkpoint_fingerprint(found[-1]) == recipe_fingerprint(recipe)
    if found and not resume:
        console.print("[yellow]the recipe changed since the checkpoints in "
                      f"{recipe.run_dir} were written: training from scratch")
        _clear(recipe, TRAIN_OUTPUTS)
    train(recipe, resume=resume)


TRAIN_OUTPUTS = ("checkpoints", "student", "train_log.jsonl", "train_summary.json")
DEFAULT_STAGES = (
    Stage("train", train_stage, outputs=TRAIN_OUTPUTS),
    Stage("eval", evaluate, outputs=("eval.json",)),
)


def run_pipeline(recipe: Recipe, stages: tuple[Stage, ...] = DEFAULT_STAGES,
                 force: bool = False) -> None:
    """Run each stage unless its marker says it already ran with this recipe."""
    fingerprint = recipe_fingerprint(recipe)
    redo = force
    for stage in stages:
        marker = recipe.run_dir / "stages" / f"{stage.name}.json"
        if not redo and _is_done(marker, fingerprint):
            console.print(f"[green]✓[/] {stage.name}: done already (use --force to redo)")
            continue
        redo = True  # a stage that runs makes every later one stale
        marker.unlink(missing_ok=True)
        if force:
            _clear(recipe, stage.outputs)
        console.rule(f"[bold]{stage.name}")
        started = time.perf_counter()
        stage.run(recipe)
        atomic_write_json(marker, {"fingerprint": fingerprint,
                                   "seconds": round(time.perf_counter() - started, 2),
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _is_done(marker: Path, fingerprint: str) -> bool:
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("fingerprint") == fingerprint


def _clear(recipe: Recipe, outputs: tuple[str, ...]) -> None:
    for name in outputs:
        path = recipe.run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
