"""Run a recipe's stages in order over its run folder, skipping the finished ones.

Each stage names the recipe sections its result depends on. Its fingerprint hashes those
sections together with the previous stage's fingerprint, so changing a section reruns that
stage and every stage after it, and nothing before. A stage is finished when its marker
`stages/<name>.json` holds its current fingerprint. An interrupted training resumes from
its newest checkpoint.
"""

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distil.compare import run_compare
from distil.evaluate import evaluate
from distil.fsutil import atomic_write_json, remove_paths
from distil.progress import console
from distil.recipe import Recipe
from distil.report import build_report
from distil.train import TRAIN_OUTPUTS, train_or_resume


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


SYNTH_INPUTS = ("seed", "teacher.model", "teacher.revision", "teacher.dtype", "teacher.api.base_url",
                "teacher.api.endpoint", "teacher.api.tokenizer", "synth")
"""What decides the synth data; pacing, retries, prices and budget caps do not."""


def synth_stage(recipe: Recipe) -> None:
    """Generate RUN/data with the teacher; the request journal (RUN/synth) survives --force."""
    from distil.synth.stage import run_synth

    run_synth(recipe)


def capture_stage(recipe: Recipe) -> None:
    """Capture the teacher's top-k over the training rows into the recipe's signal store."""
    from distil.capture import capture

    capture(recipe)


def export_stage(recipe: Recipe) -> None:
    """Export RUN/student to RUN/export and check every variant against PyTorch."""
    from distil.export.stage import export_run
    from distil.recipe_edge import with_recipe_seed

    export_run(recipe.run_dir, with_recipe_seed(recipe.export, recipe.seed))


def bench_stage(recipe: Recipe) -> None:
    """Time teacher, student and the exported variants; merge the figures into RUN/eval.json."""
    from distil.bench import bench_run
    from distil.recipe_edge import with_recipe_seed

    bench_run(recipe.run_dir, with_recipe_seed(recipe.bench, recipe.seed), teacher=recipe.teacher.model)


def _captures(recipe: Recipe) -> bool:
    return recipe.signals.path == "capture" and recipe.distill.kd_weight > 0


def default_stages() -> tuple[Stage, ...]:
    """Every stage the toolkit knows, in order; `enabled` picks those a recipe wants."""
    return (
        Stage("synth", synth_stage, inputs=SYNTH_INPUTS, outputs=("data",),
              enabled=lambda recipe: recipe.synth is not None),
        Stage("capture", capture_stage, inputs=("seed", "teacher", "data", "capture",
                                                 "distill.temperature"),
              outputs=("signals",), enabled=_captures),
        Stage("train", train_or_resume,
              inputs=("seed", "teacher", "student", "data", "distill", "train", "signals"),
              outputs=TRAIN_OUTPUTS),
        Stage("eval", evaluate, inputs=("eval",),
              outputs=("eval.json", "eval_samples.jsonl", "teacher_answers.json")),
        Stage("export", export_stage, inputs=("export",), outputs=("export",),
              enabled=lambda recipe: recipe.export is not None),
        Stage("bench", bench_stage, inputs=("bench",),
              enabled=lambda recipe: recipe.bench is not None),
        Stage("compare", run_compare, inputs=("compare",), outputs=("compare",),
              enabled=lambda recipe: recipe.compare),
        Stage("report", lambda recipe: build_report(recipe.run_dir), inputs=(),
              outputs=("report.md", "report.html", "report_files")),
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
            remove_paths(recipe.run_dir, stage.outputs)
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
