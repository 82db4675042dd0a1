"""`distil push RUN --repo ID`: a run's student, adapter, export or synthesised data to the
Hugging Face Hub, with its card (distil.hub.push; docs/hub.md)."""

from pathlib import Path
from typing import Annotated, cast

import typer

from distil.hub.metadata import HUB_ID
from distil.hub.push import FOLDERS, PushError, What, push_plan, push_run


def push(
    run_dir: Annotated[Path, typer.Argument(help="Run folder.", show_default=False)],
    repo: Annotated[
        str,
        typer.Option(
            help="Hub repository to push to, org/name (created if it is not there).", show_default=False
        ),
    ],
    what: Annotated[
        str,
        typer.Option(
            help="What to push: student (RUN/student), adapter (RUN/adapter, a LoRA run's "
            "PEFT adapter), export (RUN/export, the variants that passed parity) or "
            "data (RUN/data, synth's train.parquet, as a dataset repository)."
        ),
    ] = "student",
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be sent; send nothing (no token needed).")
    ] = False,
) -> None:
    """Push a run's student, adapter, export or data to the Hugging Face Hub (token: $HF_TOKEN)."""
    if what not in FOLDERS:
        raise PushError(f"--what {what} is not one of {', '.join(FOLDERS)}; pick one")
    if not HUB_ID.match(repo):
        raise PushError(f"--repo {repo} is not a Hub repository id; write it as org/name")
    plan = push_plan(run_dir, cast(What, what))  # one of FOLDERS, checked above
    if dry_run:
        for name, source in plan.files.items():
            size = source.stat().st_size if isinstance(source, Path) else len(source)
            typer.echo(
                f"{name}\t{size} bytes"
                + ("" if isinstance(source, Path) else "\t(card written for the push)")
            )
        typer.echo(
            f"would push {len(plan.files)} files of {plan.folder} to the {plan.repo_type} repository {repo}"
        )
        return
    url = push_run(plan, repo, private=private)
    typer.echo(f"pushed {len(plan.files)} files of {plan.folder} to {url}")
