"""The export stage: a trained student to deployable files, each checked against PyTorch.

    result = export_run("runs/demo")               # -> runs/demo/export/
    result = export_run("path/to/model", ExportSection(formats=["onnx", "onnx-int8"]))

Writes, in one atomic step, the variants of every format asked for (the registry in
`distil.export_formats`: `hf-float16/`, `onnx/`, `onnx-int8/`, `gguf-TYPE/`, ...) and
`parity.json`. A variant that misses its parity thresholds is moved to `failed/NAME/` so
that no one deploys it by mistake, `parity.json` says `"passed": false`, a red table says
why, and `export_run` raises `ParityError` unless `allow_parity_failure` is set
(`write_export` does the same work and leaves the verdict to its caller: `distil run` goes
on to bench and report first).
"""

import json
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distil.errors import ExportError, OutputError, ParityError
from distil.export_formats import (
    ExportFormat,
    VariantSpec,
    format_names,
    missing_modules,
    resolve,
    with_requirements,
)
from distil.fsutil import aside_path, atomic_directory, atomic_write_json, ensure_writable_dir
from distil.hub import run_of, write_model_card
from distil.progress import console, progress_bar
from distil.recipe import ExportSection


def make_export_config(base: dict[str, Any] | None = None, **fields: Any) -> ExportSection:
    """An ExportSection from loose options (the CLI's) over `base` (a run recipe's `export:`);
    ExportError names a bad one. Options that are None are not given: `base`'s value (or the
    default) stays.
    """
    aliases = {"fp16": "float16", "bf16": "bfloat16"}
    if fields.get("dtype") is not None:
        fields["dtype"] = aliases.get(fields["dtype"], fields["dtype"])
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        return ExportSection(**{**(base or {}), **given})
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise ExportError(
            "bad export option: " + "; ".join(problems) + " (dtype: fp16 or bf16; "
            f"format: {', '.join(format_names())})"
        ) from None


def check_export_target(out_dir: Path, overwrite: bool = False) -> Path | None:
    """Refuse an export folder that would destroy what a user put there; check it is writable.

    An empty folder, or an earlier export holding only what that export wrote (the names
    listed in its parity.json), is replaced. Anything else (an earlier export beside which
    the user put notes, or a folder of other files) is refused, or with `overwrite` moved
    aside: the returned path is where it will go. The folder and its parent must be writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(
            f"export folder {out_dir} is a file; pass --out a folder path (new, empty, or an earlier export)"
        )
    fix = "pass --out a folder you can write to"
    ensure_writable_dir(out_dir.parent, "folder of the export", fix)
    if out_dir.is_dir():  # it is renamed aside when replaced: it must be writable itself
        ensure_writable_dir(out_dir, "export folder", fix)
    foreign = _foreign_entries(out_dir)
    if not foreign:
        return None
    aside = aside_path(out_dir)
    if overwrite:
        return aside
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    if (out_dir / "parity.json").is_file():
        raise OutputError(
            f"{out_dir} is an earlier export that also holds files the export did "
            f"not write ({shown}); move them out of it, pass --out another folder, "
            f"or pass --overwrite to move the whole folder aside to {aside}"
        )
    raise OutputError(
        f"{out_dir} already holds files that are not an export (no "
        "parity.json); pass --out a new or empty folder, or --overwrite to "
        f"move them aside to {aside} and export there"
    )


EXPORT_NAMES = ("parity.json", "README.md", "failed", "hf-*", "onnx", "onnx-int8", "gguf-*")
"""What exports written before parity.json listed its files could hold (a fixed list: no
later format was written by them)."""


def _foreign_entries(out_dir: Path) -> list[str]:
    """Names in `out_dir` that no earlier export wrote there (all of them without parity.json)."""
    if not out_dir.is_dir():
        return []
    present = sorted(entry.name for entry in out_dir.iterdir())
    parity_file = out_dir / "parity.json"
    if not parity_file.is_file():
        return present
    try:
        written = json.loads(parity_file.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        written = None
    if isinstance(written, list):
        return [name for name in present if name not in written]
    return [name for name in present if not any(fnmatch(name, p) for p in EXPORT_NAMES)]


@dataclass(frozen=True)
class ExportResult:
    """Where the export went, which variants are deployable, and the parity figures."""

    out_dir: Path
    deployable: dict[str, Path]
    parity: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.parity["passed"])


def resolve_export_paths(source: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """(model folder, export folder) of a run folder (RUN/student) or a model folder."""
    source = Path(source)
    if (source / "student" / "config.json").is_file():
        return source / "student", Path(out) if out else source / "export"
    if (source / "config.json").is_file():
        return source, Path(out) if out else source.with_name(f"{source.name}-export")
    if source.is_file():
        recipe = (
            f" (a recipe: `distil run {source}` trains its student and exports it)"
            if source.suffix in (".yaml", ".yml")
            else ""
        )
        raise ExportError(
            f"{source} is a file, not a run folder or a model folder{recipe}; pass "
            "runs/NAME after `distil train`, or a folder written by save_pretrained"
        )
    if not source.is_dir():
        raise ExportError(
            f"{source} does not exist; pass a run folder (runs/NAME) or a model "
            "folder written by save_pretrained"
        )
    raise ExportError(
        f"{source} is neither a run folder (no student/config.json) nor a model "
        "folder (no config.json); pass runs/NAME after `distil train`, or a folder "
        "written by save_pretrained"
    )


def export_run(
    source: str | Path,
    config: ExportSection | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export the student of a run (or a model folder), check parity, write parity.json;
    ParityError when a variant failed, unless `config.allow_parity_failure`.

    An export folder holding other files is refused unless `overwrite` (then moved aside).
    """
    config = config or ExportSection()
    result = write_export(source, config, out, overwrite)
    if not result.passed and not config.allow_parity_failure:
        raise ParityError(failure_message(result.parity, result.out_dir))
    return result


def write_export(
    source: str | Path,
    config: ExportSection | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """`export_run` without the verdict: a failed variant is set aside and reported, and
    the result says so (`passed`), but nothing is raised."""
    from distil.export.parity import Written, check_variants
    from distil.models import load_model

    config = config or ExportSection()
    model_dir, out_dir = resolve_export_paths(source, out)
    aside = check_export_target(out_dir, overwrite)
    formats = with_requirements(config.formats)
    _check_needs(formats)
    loaded = load_model(str(model_dir), "student", dtype="float32")
    planned = _plan(loaded, formats, config)  # what any format cannot take fails here
    with atomic_directory(out_dir, keep_old_at=aside) as tmp, progress_bar() as bar:
        task = bar.add_task("export", total=2 * len(planned) + 1)
        written = []
        for fmt, spec in planned:
            bar.update(task, description=f"export {spec.name}")
            resolve(fmt.write)(loaded, tmp / spec.name, spec, config)
            if not (tmp / spec.name).is_dir():
                raise ExportError(
                    f"the {fmt.name} export format wrote no {spec.name}/ folder; "
                    "its writer must write each variant it declares"
                )
            written.append(Written(fmt, spec, tmp / spec.name))
            bar.advance(task)
        parity = check_variants(loaded, written, config, bar, task)
        parity["source"] = str(model_dir)
        _set_aside_failures(tmp, parity)
        write_model_card(tmp, run_of(model_dir))
        parity["files"] = sorted([*(entry.name for entry in tmp.iterdir()), "parity.json"])
        atomic_write_json(tmp / "parity.json", parity)
        check_export_target(out_dir, overwrite)  # again: the user may have added files meanwhile
    if aside is not None:
        console.print(f"what {out_dir} held was moved to {aside}", highlight=False, soft_wrap=True)
    show_parity(parity, out_dir)
    deployable = {v["name"]: out_dir / v["path"] for v in parity["variants"] if v["passed"]}
    return ExportResult(out_dir, deployable, parity)


def _check_needs(formats: list[ExportFormat]) -> None:
    """ExportError naming the first format whose writer lacks a Python module, and the fix."""
    for fmt in formats:
        missing = missing_modules(fmt.needs)
        if missing:
            modules, hint = ", ".join(missing), next(iter(missing.values()))
            raise ExportError(
                f"the {fmt.name} export needs {modules}: {hint}, or drop `{fmt.name}` from export.formats"
            )


def _plan(
    loaded: Any, formats: list[ExportFormat], config: ExportSection
) -> list[tuple[ExportFormat, VariantSpec]]:
    """Each format's pre-check, then (format, variant) for every variant to write."""
    for fmt in formats:
        if fmt.precheck is not None:
            resolve(fmt.precheck)(loaded, config)
    planned = [(fmt, spec) for fmt in formats for spec in fmt.variants(config)]
    for fmt, spec in planned:
        if spec.kind not in config.thresholds:
            raise ExportError(
                f"the {fmt.name} export format holds {spec.name} to thresholds "
                f"{spec.kind!r}, which export.thresholds does not have; use one "
                f"of {', '.join(config.thresholds)}"
            )
    return planned


def _set_aside_failures(tmp: Path, parity: dict[str, Any]) -> None:
    """Move each failed variant to failed/NAME, so that only passing files look deployable."""
    for variant in parity["variants"]:
        if not variant["passed"]:
            (tmp / "failed").mkdir(exist_ok=True)
            (tmp / variant["path"]).rename(tmp / "failed" / variant["name"])
            variant["path"] = f"failed/{variant['name']}"
    parity["deployable"] = [v["name"] for v in parity["variants"] if v["passed"]]


def show_parity(parity: dict[str, Any], out_dir: Path) -> None:
    """Print the parity table, then each failure in red."""
    from rich.table import Table

    from distil.progress import print_table

    table = Table(
        title=f"parity vs PyTorch float32 ({parity['prompts']} held-out prompts, "
        f"logits along {parity['compared_prompts']} greedy answers)"
    )
    for column in ("variant", "max |Δ logit|", "top-1 agreement", "accuracy", "Δ accuracy", "verdict"):
        table.add_column(column)
    reference = parity["reference"]["accuracy"]  # None: no task family graded
    table.add_row(
        "pytorch float32", "-", "-", "-" if reference is None else f"{reference:.1%}", "-", "reference"
    )
    for v in parity["variants"]:
        if v.get("max_abs_logit_diff") is None:  # checked its format's own way, not run
            table.add_row(
                v["name"],
                "-",
                "-",
                "-",
                "-",
                "[green]checked[/] (not run)" if v["passed"] else "[bold red]FAILED",
            )
            continue
        graded = v.get("accuracy") is not None
        table.add_row(
            v["name"],
            f"{v['max_abs_logit_diff']:.2e}",
            f"{v['top1_agreement']:.2%}",
            f"{v['accuracy']:.1%}" if graded else "-",
            f"{v['accuracy_delta']:+.1%}" if graded else "-",
            "[green]passed" if v["passed"] else "[bold red]FAILED",
        )
    print_table(table)
    skipped: dict[str, list[str]] = {}
    for v in parity["variants"]:
        if str(v.get("runtime_check", "")).startswith("skipped: "):
            skipped.setdefault(v["runtime_check"].removeprefix("skipped: "), []).append(v["name"])
    for reason, names in skipped.items():
        console.print(
            f"[yellow]runtime check skipped[/] for {', '.join(names)}: {reason}; "
            "checked without running them (see parity.json)",
            highlight=False,
            soft_wrap=True,
        )
    for v in parity["variants"]:
        if not v["passed"]:
            console.print(
                f"[bold red]{v['name']} FAILED parity[/]: {'; '.join(v['failures'])}; "
                f"set aside in {out_dir / v['path']}",
                highlight=False,
                soft_wrap=True,
            )
    console.print(f"parity written to {out_dir / 'parity.json'}", highlight=False, soft_wrap=True)


def failed_variants(out_dir: Path) -> list[dict[str, Any]]:
    """The variants an export folder's parity.json marks failed (none without one)."""
    parity_file = Path(out_dir) / "parity.json"
    if not parity_file.is_file():
        return []
    return [v for v in json.loads(parity_file.read_text()).get("variants", []) if not v["passed"]]


def failure_message(parity: dict[str, Any], out_dir: Path) -> str:
    """The one line that says which variants failed, where they went, and what to do."""
    failed = [f"{v['name']} ({'; '.join(v['failures'])})" for v in parity["variants"] if not v["passed"]]
    return (
        f"parity check failed for {', '.join(failed)}; moved to {out_dir / 'failed'}, not "
        "deployable. See parity.json; deploy a variant that passed, train the student "
        "longer (confident models quantise better), or pass --allow-parity-failure (in a "
        "recipe: export.allow_parity_failure: true) to exit 0"
    )
