"""Run a recipe's stages in order over its run folder, skipping the finished ones.

What decides each stage's result is declared once, in the recipe module of that stage
(distil.recipe.inputs): its own fields and the stages it reads from. A stage's fingerprint
hashes those values, so changing a field redoes the stages that depend on it and no
other. A stage is finished when its marker `stages/<name>.json` holds its current
fingerprint, or input values that differ only by fields added to distil since, at their
defaults (an upgrade redoes nothing that the new fields would not change). An interrupted
training resumes from its newest checkpoint. A variant that fails its export parity check
stops nothing: it is set aside, bench and report run without it, and the run raises
`ParityError` (exit status 3) at the end unless that was allowed.
"""

import json
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from distil import launch
from distil.errors import CheckpointError, RecipeError
from distil.evaluate import evaluate
from distil.fsutil import atomic_write_json, ensure_writable_dir, move_aside
from distil.generators import check_generators
from distil.pipeline.compare import run_compare
from distil.progress import console
from distil.recipe import Recipe, teacher_signal
from distil.recipe.inputs import input_values, inputs_fingerprint, same_inputs
from distil.report import build_report
from distil.train import TRAIN_OUTPUTS, run_training


def _always(recipe: Recipe) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One step of a run: what it does, what `--force` clears, whether the recipe wants it.
    What decides its result is declared in distil.recipe under the same name."""

    name: str
    run: Callable[[Recipe], Any]
    outputs: tuple[str, ...] = ()
    """Paths in the run folder this stage writes."""
    enabled: Callable[[Recipe], bool] = _always
    """Whether the recipe asks for this stage."""


def synth_stage(recipe: Recipe) -> None:
    """Generate RUN/data with the teacher; the request journal (RUN/synth) survives --force."""
    from distil.synth.stage import run_synth

    run_synth(recipe)


def capture_stage(recipe: Recipe) -> None:
    """Capture the teacher's top-k over the training rows into the recipe's signal store."""
    from distil.capture import capture

    capture(recipe)


def export_stage(recipe: Recipe) -> None:
    """Export RUN/student to RUN/export and check every variant against PyTorch; a failed
    variant is set aside, and judged when the run ends (`parity_verdict`)."""
    from distil.export.stage import write_export
    from distil.recipe import with_recipe_seed

    write_export(recipe.run_dir, with_recipe_seed(recipe.export, recipe.seed))


def parity_verdict(recipe: Recipe, allow_parity_failure: bool = False) -> list[str]:
    """The exported variants that failed parity (RUN/export/parity.json); ParityError naming
    them unless failures are allowed (here or by export.allow_parity_failure)."""
    from distil.errors import ParityError
    from distil.export.stage import failed_variants, failure_message

    if recipe.export is None:
        return []
    out_dir = recipe.run_dir / "export"
    failed = failed_variants(out_dir)
    if failed and not (allow_parity_failure or recipe.export.allow_parity_failure):
        raise ParityError(failure_message({"variants": failed}, out_dir))
    return [v["name"] for v in failed]


def bench_stage(recipe: Recipe) -> None:
    """Time teacher, student and the exported variants; merge the figures into RUN/eval.json."""
    from distil.bench import bench_run
    from distil.recipe import with_recipe_seed

    bench_run(recipe.run_dir, with_recipe_seed(recipe.bench, recipe.seed), teacher=recipe.teacher.model)


def _captures(recipe: Recipe) -> bool:
    return teacher_signal(recipe).own_capture


def default_stages(
    restart: bool = False,
    num_processes: int = 1,
    accelerate_config: Path | None = None,
    resume_from: Path | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Stage, ...]:
    """Every stage the toolkit knows, in order; `enabled` picks those a recipe wants.
    The train stage is `distil train`'s own entry (distil.train.run_training), resuming
    checkpoints of the same inputs (the newest, or `resume_from`); `restart`,
    `num_processes`, `accelerate_config` and `callbacks` are its options."""
    training = partial(
        run_training,
        resume=resume_from or True,
        restart=restart,
        num_processes=num_processes,
        accelerate_config=accelerate_config,
        callbacks=callbacks,
    )
    return (
        Stage("synth", synth_stage, outputs=("data",), enabled=lambda recipe: recipe.synth is not None),
        Stage("capture", capture_stage, outputs=("signals",), enabled=_captures),
        Stage("train", training, outputs=TRAIN_OUTPUTS),
        Stage("eval", evaluate, outputs=("eval.json", "eval_samples.jsonl", "teacher_answers.json")),
        Stage("export", export_stage, outputs=("export",), enabled=lambda recipe: recipe.export is not None),
        Stage("bench", bench_stage, enabled=lambda recipe: recipe.bench is not None),
        Stage("compare", run_compare, outputs=("compare",), enabled=lambda recipe: recipe.compare),
        Stage(
            "report",
            lambda recipe: build_report(recipe.run_dir),
            outputs=("report.md", "report.html", "report_files"),
        ),
    )


def run_pipeline(
    recipe: Recipe,
    stages: tuple[Stage, ...] | None = None,
    force: bool = False,
    restart: bool = False,
    num_processes: int = 1,
    accelerate_config: Path | None = None,
    allow_parity_failure: bool = False,
    resume_from: Path | None = None,
    callbacks: Sequence[Any] = (),
) -> list[str]:
    """Run each enabled stage unless its marker holds its current fingerprint; return the
    exported variants that failed parity (allowed), or raise ParityError naming them.

    `restart`: training whose checkpoints were written under other inputs starts afresh, the
    old training moved aside (without it, such a run is refused); checkpoints of the same
    inputs are resumed either way (distil.train.resume). `resume_from`: training continues
    from that checkpoint (later ones moved aside), and the stages after it are redone.
    `callbacks` hear of the training (distil.train.callbacks).
    """
    check_generators(recipe)
    ensure_writable_dir(
        recipe.run_dir, "run folder", "pass --out a folder you can write to, or fix output_dir in the recipe"
    )  # before any stage loads a model
    launch.check_config(accelerate_config)
    lora = recipe.student.lora
    if lora is not None and not lora.save_merged:
        raise RecipeError(
            "student.lora.save_merged: false writes no RUN/student, which the "
            "eval stage of distil run reads: set it true, or train with "
            "`distil train` for the adapter alone"
        )
    if resume_from is not None and force:
        raise CheckpointError(
            "--resume CHECKPOINT continues training from it and --force "
            "redoes every stage from scratch: pass one"
        )
    stages = stages or default_stages(restart, num_processes, accelerate_config, resume_from, callbacks)
    redo = _from_training(stages) if resume_from is not None else ()
    for stage in stages:
        if not stage.enabled(recipe):
            continue
        values = input_values(recipe, stage.name)
        marker = recipe.run_dir / "stages" / f"{stage.name}.json"
        if not (force or stage.name in redo) and _is_done(marker, values):
            console.print(f"[green]✓[/] {stage.name}: done already (use --force to redo)")
            continue
        marker.unlink(missing_ok=True)
        aside = force or (stage.name in redo and stage.name != "train")  # training rewinds itself
        if aside and (moved := move_aside(recipe.run_dir, stage.outputs, stage.name)):
            console.print(f"{stage.name}: earlier outputs moved to {moved}", highlight=False)
        console.rule(f"[bold]{stage.name}")
        started, cpu_started = time.perf_counter(), cpu_seconds()
        stage.run(recipe)
        atomic_write_json(
            marker,
            {
                "fingerprint": inputs_fingerprint(values),
                "inputs": values,
                "seconds": round(time.perf_counter() - started, 2),
                "cpu_seconds": round(cpu_seconds() - cpu_started, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    return parity_verdict(recipe, allow_parity_failure)


def cpu_seconds() -> float:
    """CPU time (user + system, every thread) of this process and of its finished children
    (the bench's workers): with the wall clock, what a stage cost on a shared machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _from_training(stages: tuple[Stage, ...]) -> tuple[str, ...]:
    """The train stage and every stage after it."""
    names = [stage.name for stage in stages]
    return tuple(names[names.index("train") :]) if "train" in names else ()


def stage_fingerprint(recipe: Recipe, name: str) -> str:
    """Hash of the values of everything the stage's result depends on (distil.recipe.inputs)."""
    return inputs_fingerprint(input_values(recipe, name))


def _is_done(marker: Path, values: dict) -> bool:
    """Whether the stage's marker says it finished under these inputs (fields added to distil
    since, at their defaults, included; a marker of an earlier distil holds the hash alone)."""
    if not marker.is_file():
        return False
    done = json.loads(marker.read_text())
    return same_inputs(done.get("fingerprint", ""), done.get("inputs", {}), values)
