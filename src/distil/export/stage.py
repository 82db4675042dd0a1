"""The export stage: a trained student to deployable files, each checked against PyTorch.

    result = export_run("runs/demo")               # -> runs/demo/export/
    result = export_run("path/to/model", ExportSection(formats=["onnx", "onnx-int8"]))

Writes, in one atomic step, `hf-float16/` (or `hf-bfloat16/`), `onnx/`, `onnx-int8/` and
`parity.json`. A variant that misses its parity thresholds is moved to `failed/NAME/` so
that no one deploys it by mistake, `parity.json` says `"passed": false`, a red table says
why, and `ParityError` is raised unless `allow_parity_failure` is set.
"""

import json
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distil.errors import ExportError, OutputError, ParityError
from distil.export.card import run_of, write_model_card
from distil.fsutil import aside_path, atomic_directory, atomic_write_json, ensure_writable_dir
from distil.progress import console, progress_bar
from distil.recipe import ExportSection, Format


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
        raise ExportError("bad export option: " + "; ".join(problems) + " (dtype: fp16 or bf16; "
                          "format: hf, onnx, onnx-int8 or gguf)") from None


def check_export_target(out_dir: Path, overwrite: bool = False) -> Path | None:
    """Refuse an export folder that would destroy what a user put there; check it is writable.

    An empty folder, or an earlier export holding only what that export wrote (the names
    listed in its parity.json), is replaced. Anything else (an earlier export beside which
    the user put notes, or a folder of other files) is refused, or with `overwrite` moved
    aside: the returned path is where it will go. The folder and its parent must be writable.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"export folder {out_dir} is a file; pass --out a folder path "
                          "(new, empty, or an earlier export)")
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
        raise OutputError(f"{out_dir} is an earlier export that also holds files the export did "
                          f"not write ({shown}); move them out of it, pass --out another folder, "
                          f"or pass --overwrite to move the whole folder aside to {aside}")
    raise OutputError(f"{out_dir} already holds files that are not an export (no "
                      "parity.json); pass --out a new or empty folder, or --overwrite to "
                      f"move them aside to {aside} and export there")


EXPORT_NAMES = ("parity.json", "README.md", "failed", "hf-*", "onnx", "onnx-int8", "gguf-*")
"""What exports written before parity.json listed its files could hold."""


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
        recipe = (f" (a recipe: `distil run {source}` trains its student and exports it)"
                  if source.suffix in (".yaml", ".yml") else "")
        raise ExportError(f"{source} is a file, not a run folder or a model folder{recipe}; pass "
                          "runs/NAME after `distil train`, or a folder written by save_pretrained")
    if not source.is_dir():
        raise ExportError(f"{source} does not exist; pass a run folder (runs/NAME) or a model "
                          "folder written by save_pretrained")
    raise ExportError(f"{source} is neither a run folder (no student/config.json) nor a model "
                      "folder (no config.json); pass runs/NAME after `distil train`, or a folder "
                      "written by save_pretrained")


def export_run(source: str | Path, config: ExportSection | None = None,
               out: str | Path | None = None, overwrite: bool = False) -> ExportResult:
    """Export the student of a run (or a model folder), check parity, write parity.json.

    An export folder holding other files is refused unless `overwrite` (then moved aside).
    """
    from distil.export.parity import check_variants
    from distil.models import load_model

    config = config or ExportSection()
    model_dir, out_dir = resolve_export_paths(source, out)
    aside = check_export_target(out_dir, overwrite)
    loaded = load_model(str(model_dir), "student", dtype="float32")
    formats = _with_dependencies(config.formats)
    if "onnx" in formats:
        from distil.export.onnx import probe_cache_layout

        probe_cache_layout(loaded.model)  # an architecture ONNX cannot take fails before any work
    if "gguf" in formats:
        from distil.export.gguf_variants import check_gguf_export

        check_gguf_export(loaded, config)  # so does one (or a tokenizer) GGUF cannot carry
    with atomic_directory(out_dir, keep_old_at=aside) as tmp, progress_bar() as bar:
        variants = len(formats) + (len(config.gguf) - 1 if "gguf" in formats else 0)
        task = bar.add_task("export", total=len(formats) + variants + 1)
        written = _write_formats(loaded, tmp, formats, config, bar, task)
        parity = check_variants(loaded, written, config, bar, task)
        parity["source"] = str(model_dir)
        _set_aside_failures(tmp, parity)
        _write_cards(tmp, written, run_of(model_dir))
        parity["files"] = sorted([*(entry.name for entry in tmp.iterdir()), "parity.json"])
        atomic_write_json(tmp / "parity.json", parity)
        check_export_target(out_dir, overwrite)  # again: the user may have added files meanwhile
    if aside is not None:
        console.print(f"what {out_dir} held was moved to {aside}", highlight=False, soft_wrap=True)
    show_parity(parity, out_dir)
    deployable = {v["name"]: out_dir / v["path"] for v in parity["variants"] if v["passed"]}
    result = ExportResult(out_dir, deployable, parity)
    if not result.passed and not config.allow_parity_failure:
        raise ParityError(_failure_message(parity, out_dir))
    return result


def _write_cards(tmp: Path, written: dict[str, Any], run_dir: Path | None) -> None:
    """The model card at the export's root and in each Hugging Face folder kept."""
    write_model_card(tmp, run_dir)
    for name in written:
        if name.startswith("hf-") and (tmp / name).is_dir():
            write_model_card(tmp / name, run_dir)


def _with_dependencies(formats: list[Format]) -> list[Format]:
    wanted = set(formats) | ({"onnx"} if "onnx-int8" in formats else set())
    return [f for f in ("hf", "onnx", "onnx-int8", "gguf") if f in wanted]


def _write_formats(loaded: Any, tmp: Path, formats: list[Format], config: ExportSection,
                   bar: Any, task: Any) -> dict[str, tuple[str, Path]]:
    """Write each format; return variant name -> (threshold kind, folder)."""
    from distil.export.gguf_variants import write_gguf_variants
    from distil.export.hf import export_hf
    from distil.export.onnx import export_onnx, quantize_int8

    written: dict[str, tuple[str, Path]] = {}
    for fmt in formats:
        bar.update(task, description=f"export {fmt}")
        if fmt == "hf":
            name = f"hf-{config.dtype}"
            written[name] = ("half", export_hf(loaded, tmp / name, config.dtype))
        elif fmt == "gguf":
            written |= write_gguf_variants(loaded, tmp, config)
        elif fmt == "onnx":
            written["onnx"] = ("float32", export_onnx(loaded, tmp / "onnx", config.opset))
        else:
            written["onnx-int8"] = ("int8", quantize_int8(tmp / "onnx", tmp / "onnx-int8",
                                                          config.per_channel))
        bar.advance(task)
    return written


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

    table = Table(title=f"parity vs PyTorch float32 ({parity['prompts']} held-out prompts, "
                        f"logits along {parity['compared_prompts']} greedy answers)")
    for column in ("variant", "max |Δ logit|", "top-1 agreement", "accuracy", "Δ accuracy",
                   "verdict"):
        table.add_column(column)
    reference = parity["reference"]["accuracy"]
    table.add_row("pytorch float32", "-", "-", f"{reference:.1%}", "-", "reference")
    for v in parity["variants"]:
        if v.get("accuracy") is None:  # a GGUF file read back, but not run (no llama.cpp)
            table.add_row(v["name"], "-", "-", "-", "-", "[green]read back[/] (not run)"
                          if v["passed"] else "[bold red]FAILED")
            continue
        table.add_row(v["name"], f"{v['max_abs_logit_diff']:.2e}", f"{v['top1_agreement']:.2%}",
                      f"{v['accuracy']:.1%}", f"{v['accuracy_delta']:+.1%}",
                      "[green]passed" if v["passed"] else "[bold red]FAILED")
    print_table(table)
    if any(v.get("runtime_check", "").startswith("skipped") for v in parity["variants"]):
        console.print("[yellow]GGUF runtime check skipped[/]: llama-cpp-python is not installed; "
                      "the GGUF files were read back and their weights compared, not run",
                      highlight=False, soft_wrap=True)
    for v in parity["variants"]:
        if not v["passed"]:
            console.print(f"[bold red]{v['name']} FAILED parity[/]: {'; '.join(v['failures'])}; "
                          f"set aside in {out_dir / v['path']}", highlight=False, soft_wrap=True)
    console.print(f"parity written to {out_dir / 'parity.json'}", highlight=False, soft_wrap=True)


def _failure_message(parity: dict[str, Any], out_dir: Path) -> str:
    failed = [f"{v['name']} ({'; '.join(v['failures'])})" for v in parity["variants"]
              if not v["passed"]]
    return (f"parity check failed for {', '.join(failed)}; moved to {out_dir / 'failed'}, not "
            "deployable. See parity.json; deploy a variant that passed, train the student "
            "longer (confident models quantise better), or pass --allow-parity-failure to exit 0")
