"""`distil export`, `distil bench` and `distil report`: the commands over a run folder (or a
model folder) rather than a recipe. A run's recipe.yaml section gives their defaults; each
option that fills a recipe field takes its help from that field (`recipe_field_help`), and
`--format` lists the export-format registry (`formats_help`). distil.cli registers them.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from distil.progress import quiet_libraries


def recipe_field_help(section: str, field: str) -> str:
    """A recipe field's docstring and default, so that an option is documented once, in the
    recipe section it fills."""
    from distil.recipe import Recipe, section_model

    return _described(section_model(Recipe.model_fields[section].annotation), field, f"{section}.{field}")


def _described(model: Any, field: str, key: str | None) -> str:
    info = model.model_fields[field]
    text = " ".join((info.description or "").split())
    default = repr(info.get_default(call_default_factory=True))
    return f"{text} Default: {default}{f' ({key})' if key else ''}."


def formats_help() -> str:
    """The `--format` help, from the export-format registry."""
    from distil.export_formats import default_formats, export_format, format_names

    listed = "; ".join(f"{name}: {export_format(name).summary}" for name in format_names())
    return (
        f"{listed}. Repeat for several. Default: the run recipe's export.formats, else "
        f"{', '.join(default_formats())}."
    )


AllowParityFailure = Annotated[
    bool,
    typer.Option(
        "--allow-parity-failure",
        help="Exit 0 even when an exported variant fails parity (it is "
        "still set aside in failed/); the same as the recipe's "
        "export.allow_parity_failure: true.",
    ),
]


def export_command(
    source: Annotated[
        Path, typer.Argument(help="Run folder (exports RUN/student) or a model folder.", show_default=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Export folder. Default: RUN/export, or MODEL-export beside a model folder.",
            show_default=False,
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="Weights of the safetensors export: fp16 or bf16. Default: the run recipe's "
            "export.dtype, else fp16.",
            show_default=False,
        ),
    ] = None,
    formats: Annotated[
        list[str] | None, typer.Option("--format", help=formats_help(), show_default=False)
    ] = None,
    prompts_per_task: Annotated[
        int | None,
        typer.Option(
            help=recipe_field_help("export", "prompts_per_task") + " A run's recipe.yaml export: "
            "section comes first.",
            show_default=False,
        ),
    ] = None,
    allow_parity_failure: AllowParityFailure = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="When --out holds files an export did not write (an earlier "
            "export alone is replaced), move the folder aside (to OUT.old) "
            "and export there.",
        ),
    ] = False,
) -> None:
    """Export the student (safetensors, ONNX, int8 ONNX, GGUF, ...) and check it against PyTorch.

    A run folder's recipe.yaml `export:` section gives the defaults; options override them.
    """
    from distil.export.stage import check_export_target, export_run, make_export_config, resolve_export_paths
    from distil.progress import console
    from distil.recipe import saved_section

    config = make_export_config(
        saved_section(source, "export"),
        dtype=dtype,
        formats=formats,
        prompts_per_task=prompts_per_task,
        allow_parity_failure=allow_parity_failure or None,
    )
    # a folder that is not a model, or a bad --out, fails before slow imports
    check_export_target(resolve_export_paths(source, out)[1], overwrite)
    quiet_libraries()
    result = export_run(source, config, out=out, overwrite=overwrite)
    verdict = "parity passed" if result.passed else "[bold red]PARITY FAILED[/], kept by request"
    console.print(
        f"exported to {result.out_dir}: {', '.join(result.deployable) or 'nothing'} deployable ({verdict})",
        highlight=False,
        soft_wrap=True,
    )


def bench(
    run_dir: Annotated[Path, typer.Argument(help="Run folder.", show_default=False)],
    teacher: Annotated[
        str | None,
        typer.Option(help="Teacher to time. Default: the one in RUN/recipe.yaml.", show_default=False),
    ] = None,
    new_tokens: Annotated[
        int | None, typer.Option(help=recipe_field_help("bench", "new_tokens"), show_default=False)
    ] = None,
    repeats: Annotated[
        int | None, typer.Option(help=recipe_field_help("bench", "repeats"), show_default=False)
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(help=recipe_field_help("bench", "warmup"), show_default=False)
    ] = None,
    batch: Annotated[
        list[int] | None,
        typer.Option(
            help=recipe_field_help("bench", "batch_sizes") + " Repeat for several.", show_default=False
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help=recipe_field_help("bench", "threads"), show_default=False)
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            help=recipe_field_help("bench", "variants") + " Repeat for several.", show_default=False
        ),
    ] = None,
) -> None:
    """Time teacher, student and exported variants on CPU; write RUN/eval.json's efficiency."""
    from distil.bench import bench_run, make_bench_config

    quiet_libraries()
    given = dict(
        new_tokens=new_tokens,
        repeats=repeats,
        warmup=warmup,
        batch_sizes=batch,
        threads=threads,
        variants=variant,
    )
    from distil.recipe import saved_section

    config = make_bench_config(
        **{**saved_section(run_dir, "bench"), **{k: v for k, v in given.items() if v is not None}}
    )
    bench_run(run_dir, config, teacher=teacher)
    typer.echo(f"efficiency written to {run_dir / 'eval.json'}")


def report(run_dir: Annotated[Path, typer.Argument(help="Run folder.", show_default=False)]) -> None:
    """Write report.md and a self-contained report.html for a run folder."""
    from distil.report import build_report

    md_path, html_path = build_report(run_dir)
    typer.echo(f"report written to {html_path} and {md_path}")
