"""Run a recipe's stages in order over its run folder, skipping the finished ones.

Each stage names the recipe sections its result depends on. Its fingerprint hashes those
sections together with the previous stage's fingerprint, so changing a section reruns that
stage and every stage after it, and nothing before. A stage is finished when its marker
`stages/<name>.json` holds its current fingerprint. An interrupted training resumes from
its newest checkpoint.
"""

import hashlib
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


def _always(recipe: Recipe) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One step of a run: what it does, what it depends on, what `--force` clears."""

    name: str
    run: Callable[[Recipe], Any]
    inputs: tuple[str, ...]
    """Dotted recipe keys whose values decide this stage's result (e.g. "train", "seed")."""
    outputs: tuple[str, ...] = ()
    """Paths in the run folder this stage writes."""
    enabled: Callable[[Recipe], bool] = _always
    """Whether the recipe asks for this stage."""


def train_stage(recipe: Recipe) -> None:
    """Train, resuming checkpoints of this recipe; checkpoints of another recipe are cleared."""
    found = list_checkpoints(recipe.run_dir / "checkpoints")
    resume = bool(found) and checkpoint_fingerprint(found[-1]) == recipe_fingerprint(recipe)
    if found and not resume:
        console.print("[yellow]the recipe changed since the checkpoints in "
                      f"{recipe.run_dir} were written: training from scratch")
        clear_outputs(recipe, TRAIN_OUTPUTS)
    train(recipe, resume=resume)


TRAIN_OUTPUTS = ("checkpoints", "student", "train_log.jsonl", "train_summary.json")


def synth_stage(recipe: Recipe) -> None:
    """Generate RUN/data with the teacher; the request journal (RUN/synth) survives --force."""
    from distil.synth.stage import run_synth

    run_synth(recipe)


def default_stages() -> tuple[Stage, ...]:
    """Every stage the toolkit knows, in order; `enabled` picks those a recipe wants."""
    return (
        Stage("synth", synth_stage, inputs=("seed", "teacher", "synth"), outputs=("data",),
              enabled=lambda recipe: recipe.synth is not None),
        Stage("train", train_stage,
              inputs=("seed", "teacher", "student", "data", "distill", "train"),
              outputs=TRAIN_OUTPUTS),
        Stage("eval", evaluate, inputs=("eval",), outputs=("eval.json",)),
    )


def run_pipeline(recipe: Recipe, stages: tuple[Stage, ...] | None = None,
                 force: bool = False) -> None:
    """Run each enabled stage unless its marker holds its current fingerprint."""
    previous = ""
    for stage in stages or default_stages():
        if not stage.enabled(recipe):
            continue
        fingerprint = stage_fingerprint(recipe, stage, previous)
        previous = fingerprint
        marker = recipe.run_dir / "stages" / f"{stage.name}.json"
        if not force and _is_done(marker, fingerprint):
            console.print(f"[green]✓[/] {stage.name}: done already (use --force to redo)")
            continue
        marker.unlink(missing_ok=True)
        if force:
            clear_outputs(recipe, stage.outputs)
        console.rule(f"[bold]{stage.name}")
        started = time.perf_counter()
        stage.run(recipe)
        atomic_write_json(marker, {"fingerprint": fingerprint,
                                   "seconds": round(time.perf_counter() - started, 2),
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def stage_fingerprint(recipe: Recipe, stage: Stage, previous: str) -> str:
    """Hash of the stage's recipe inputs and the previous stage's fingerprint."""
    dumped = recipe.model_dump(mode="json")
    values = {key: _lookup(dumped, key) for key in stage.inputs}
    payload = json.dumps({"stage": stage.name, "inputs": values, "after": previous},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _is_done(marker: Path, fingerprint: str) -> bool:
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("fingerprint") == fingerprint


def clear_outputs(recipe: Recipe, outputs: tuple[str, ...]) -> None:
    """Delete a stage's outputs from the run folder."""
    for name in outputs:
        path = recipe.run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
