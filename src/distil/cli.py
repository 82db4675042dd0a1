"""The `distil` command: a thin layer that parses arguments, loads the recipe, runs a stage.

The recipe commands (run, synth, capture, train, eval, recipe) take a recipe and
`key.sub=value` overrides; the others live in distil.commands and are registered here. Errors
a user can fix print one line and exit 2. Heavy imports happen inside the commands, so
`distil --help` is quick.
"""

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from distil.commands.audit import audit_app
from distil.commands.push import push
from distil.commands.run_folder import AllowParityFailure, bench, export_command, report
from distil.commands.serve import serve
from distil.errors import DistilError
from distil.progress import quiet_libraries as _quiet_libraries


class Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer (which would exit 130 without a word)."""


class _Commands(TyperGroup):
    def main(self, args: Any = None, *rest: Any, **options: Any) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        return super().main(resume_arguments(words), *rest, **options)

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None


NEWEST = "newest"
"""The value of a bare `--resume`: the newest checkpoint."""
CHECKPOINT_NAME = re.compile(r"^step-\d+$")


def resume_arguments(words: list[str]) -> list[str]:
    """`--resume` takes a checkpoint folder (step-NNNNNN) when one follows it, else it stands
    alone for the newest: `--resume` becomes `--resume=newest` unless a checkpoint follows,
    so a recipe or an override after it is not taken for its value."""
    if not words or words[0] not in ("train", "run"):
        return words
    out = list(words)
    for number, word in enumerate(words):
        following = words[number + 1] if number + 1 < len(words) else ""
        if word == "--resume" and not CHECKPOINT_NAME.match(Path(following).name):
            out[number] = f"--resume={NEWEST}"
    return out


app = typer.Typer(
    cls=_Commands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Distil a small student language model from a large teacher.",
)
recipe_app = typer.Typer(no_args_is_help=True, help="Inspect and check recipes.")
app.add_typer(recipe_app, name="recipe")

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Recipe overrides, key.sub=value (e.g. train.max_steps=50).", show_default=False),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Run folder (overrides the recipe's output_dir).", show_default=False),
]


def _default_recipe() -> Path:
    """recipes/demo.yaml in the working folder, else in the source checkout."""
    local = Path("recipes/demo.yaml")
    return local if local.is_file() else Path(__file__).resolve().parents[2] / local


def _load(recipe: Path, overrides: list[str] | None, out: Path | None, training: bool = True):
    from distil.recipe import load_recipe

    _quiet_libraries()
    extra = list(overrides or [])
    if out is not None:
        extra.append(f"output_dir={out}")
    return load_recipe(recipe, extra, training=training)


def _check_writable(folder: Path) -> None:
    """Fail now, not after the work, when the run folder cannot be written."""
    from distil.fsutil import ensure_writable_dir

    ensure_writable_dir(
        folder, "run folder", "pass --out a folder you can write to, or fix output_dir in the recipe"
    )


def _holding(folder: Path, command: str):
    """Hold the run folder's lock for the command (distil.runlock): one writer at a time."""
    from distil.runlock import hold_run_folder

    return hold_run_folder(folder, f"distil {command}")


RestartOption = Annotated[
    bool,
    typer.Option(
        "--restart",
        help="Checkpoints written under other training inputs are moved aside into "
        "RUN/previous/ with the rest of the earlier training (never deleted) and "
        "training starts afresh; checkpoints of the same inputs are resumed, so no "
        "work is thrown away. Without it, checkpoints of other inputs are refused "
        "(distil.train.resume).",
    ),
]


ResumeOption = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="[CHECKPOINT]",
        help="Continue from the newest checkpoint in the run folder or, given one, from CHECKPOINT "
        "(a step-NNNNNN folder of the run): the checkpoints after it, and the student they "
        "led to, are moved aside into RUN/previous/ (never deleted) and the log is cut to "
        "its step.",
        show_default=False,
    ),
]


def _resume(value: str | None) -> bool | Path:
    """--resume's value: False (absent), True (the newest) or the checkpoint folder."""
    return value is not None and (value == NEWEST or Path(value))


ProcessesOption = Annotated[
    int,
    typer.Option(
        "--num-processes",
        min=1,
        help="Train on this many processes of this machine, started by "
        "`accelerate launch` (one per GPU; gloo on CPU without one).",
    ),
]
AccelerateConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--accelerate-config",
        help="accelerate config file for those processes (DDP, FSDP, DeepSpeed; see recipes/accelerate/).",
        show_default=False,
    ),
]


@app.command()
def train(
    recipe: RecipeArg,
    overrides: Overrides = None,
    out: OutOption = None,
    resume: ResumeOption = None,
    restart: RestartOption = False,
    num_processes: ProcessesOption = 1,
    accelerate_config: AccelerateConfigOption = None,
) -> None:
    """Distil the student from the recipe's teacher (live, or its captured signals)."""
    from distil.train import run_training

    loaded = _load(recipe, overrides, out)
    result = run_training(
        loaded,
        resume=_resume(resume),
        restart=restart,
        num_processes=num_processes,
        accelerate_config=accelerate_config,
    )
    if result is None:  # the launched processes trained, and said so
        return
    loss = "none logged" if result.final_loss is None else f"{result.final_loss:.4f}"
    written = " and ".join(
        f"{what} written to {where}"
        for what, where in (("student", result.student_dir), ("adapter", result.adapter_dir))
        if where is not None
    )
    typer.echo(f"{written} after {result.steps} steps (final loss {loss})")


@app.command()
def capture(recipe: RecipeArg, overrides: Overrides = None, out: OutOption = None) -> None:
    """Capture the teacher's top-k distributions over the training data into a signal store."""
    from distil.capture import capture as run_capture
    from distil.signals.recipe import capture_dir

    loaded = _load(recipe, overrides, out)
    _check_writable(loaded.run_dir)
    _check_writable(capture_dir(loaded))
    with _holding(loaded.run_dir, "capture"):
        result = run_capture(loaded)
    typer.echo(result.summary())


@app.command("eval")
def eval_command(
    recipe: RecipeArg,
    overrides: Overrides = None,
    out: OutOption = None,
    student: Annotated[
        str | None,
        typer.Option(
            help="Model to evaluate: a folder, a hub id, or 'recipe' for the recipe's "
            "untrained student. Default: the run's trained student.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Where to write the metrics. Default: RUN/eval.json.", show_default=False),
    ] = None,
) -> None:
    """Measure KL to the teacher, top-1 agreement and perplexity on held-out rows."""
    from distil.evaluate import evaluate
    from distil.fsutil import ensure_writable_file

    loaded = _load(recipe, overrides, out)
    if output is None or loaded.eval.tasks:  # the teacher's answers are cached in the run folder
        _check_writable(loaded.run_dir)
    if output is not None:
        ensure_writable_file(output, "metrics file", "pass --output a file path you can write")
    metrics = evaluate(loaded, student_source=student, output=output)
    compared = (
        f"KL(teacher||student) {metrics['kl_teacher_student']:.4f} nats/token, "
        f"top-1 agreement {metrics['top1_agreement']:.1%}"
        if metrics["kl_teacher_student"] is not None
        else f"student perplexity {metrics['student']['perplexity']:.3f} (other tokenizer "
        "than the teacher's: no KL or agreement)"
    )
    typer.echo(f"{compared}; written to {output or loaded.run_dir / 'eval.json'}")


@app.command()
def run(
    recipe: Annotated[
        Path | None,
        typer.Argument(
            help="Recipe YAML file. Default: recipes/demo.yaml (the demo job).", show_default=False
        ),
    ] = None,
    overrides: Overrides = None,
    out: OutOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Redo every stage, even those already finished.")
    ] = False,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Also train the student by the `comparison` methods (ground "
            "truth, sequence-level KD, logit KD, on-policy, ...) over its "
            "seeds, and report each method's mean accuracy with a 95% "
            "interval.",
        ),
    ] = False,
    restart: RestartOption = False,
    num_processes: ProcessesOption = 1,
    accelerate_config: AccelerateConfigOption = None,
    allow_parity_failure: AllowParityFailure = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="[CHECKPOINT]",
            help="Training always continues from the newest checkpoint; given CHECKPOINT (a "
            "step-NNNNNN folder of the run), from that one: the checkpoints after it and "
            "the student they led to are moved aside into RUN/previous/, and the stages "
            "after training are redone (their outputs moved aside too, as --force does).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run every stage of a recipe end to end, skipping stages already finished.

    An exported variant that fails parity is set aside and the other stages still run; the
    command then exits with status 3, unless --allow-parity-failure.
    """
    from distil.errors import ParityError
    from distil.pipeline import run_pipeline
    from distil.report import headline

    extra = [*(overrides or []), *(["compare=true"] if compare else [])]
    loaded = _load(recipe or _default_recipe(), extra, out)
    _check_writable(loaded.run_dir)
    with _holding(loaded.run_dir, "run"):
        try:
            chosen = _resume(resume)
            failed = run_pipeline(
                loaded,
                force=force,
                restart=restart,
                num_processes=num_processes,
                accelerate_config=accelerate_config,
                allow_parity_failure=allow_parity_failure,
                resume_from=chosen if isinstance(chosen, Path) else None,
            )
        except ParityError:
            for line in headline(loaded.run_dir):  # the figures stand; the error line comes last
                typer.echo(line)
            raise
    for line in headline(loaded.run_dir):
        typer.echo(line)
    aside = loaded.run_dir / "export" / "failed"
    typer.echo(
        f"run finished: {loaded.run_dir}"
        + (f"; {', '.join(failed)} failed parity, set aside in {aside} (allowed)" if failed else "")
    )


app.command("export")(export_command)
app.command()(bench)
app.command()(report)


@app.command()
def synth(
    recipe: RecipeArg,
    overrides: Overrides = None,
    out: OutOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count requests, tokens and cost; send nothing.")
    ] = False,
) -> None:
    """Build the training set from the teacher's answers (RUN/data/train.parquet)."""
    from distil.synth.stage import run_synth

    loaded = _load(recipe, overrides, out, training=False)  # synth does not train
    if dry_run:
        run_synth(loaded, dry_run=True)
        return
    _check_writable(loaded.run_dir)
    with _holding(loaded.run_dir, "synth"):
        result = run_synth(loaded)
    typer.echo(
        f"{result.kept} rows written to {result.train_path} ({result.rejected} rejected, "
        f"see rejects.jsonl; {result.summary['sent_this_run']} requests answered this run)"
    )


@recipe_app.command("check")
def recipe_check(recipe: RecipeArg, overrides: Overrides = None) -> None:
    """Validate a recipe and print it with every default filled in."""
    from distil.recipe import dump_recipe

    typer.echo(dump_recipe(_load(recipe, overrides, None)), nl=False)


@recipe_app.command("docs")
def recipe_docs() -> None:
    """Print the reference of every recipe field (Markdown)."""
    from distil.recipe import recipe_reference

    typer.echo(recipe_reference(), nl=False)


app.command()(serve)
app.command()(push)
app.add_typer(audit_app, name="audit")


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    from distil import interrupt
    from distil.progress import console

    try:
        with interrupt.handled():
            app()
    except DistilError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, Interrupted):
        console.print(
            "[yellow]interrupted[/]: finished stages and checkpoints are kept; "
            "rerun the same command (with --resume for train) to continue",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
