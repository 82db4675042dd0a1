"""The export stage: a trained student to deployable files, each checked against PyTorch.

    result = export_run("runs/demo")               # -> runs/demo/export/
    result = export_run("path/to/model", ExportConfig(formats=["onnx", "onnx-int8"]))

Writes, in one atomic step, `hf-float16/` (or `hf-bfloat16/`), `onnx/`, `onnx-int8/` and
`parity.json`. A variant that misses its parity thresholds is moved to `failed/NAME/` so
that no one deploys it by mistake, `parity.json` says `"passed": false`, a red table says
why, and `ParityError` is raised unless `allow_parity_failure` is set.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distil import __version__
from distil.data import render_prompt
from distil.export.errors import ExportError, ParityError
from distil.export.parity import (
    TorchVariant,
    Variant,
    check_thresholds,
    logit_agreement,
    reference_outputs,
    variant_logits,
)
from distil.fsutil import atomic_directory, atomic_write_json
from distil.progress import console, progress_bar

Format = Literal["hf", "onnx", "onnx-int8"]


class Thresholds(BaseModel):
    """What a variant must reach against the float32 PyTorch model; empty skips a check."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    """Least share of compared positions whose top-1 token matches the reference's."""
    max_abs_logit_diff: float | None = Field(default=None, ge=0)
    """Largest allowed |logit difference| at any compared position and vocabulary entry."""
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=1)
    """Largest allowed fall in held-out task accuracy (0.01 is one point); a rise never fails."""


def _default_thresholds() -> dict[str, Thresholds]:
    return {
        "float32": Thresholds(min_top1_agreement=0.999, max_abs_logit_diff=1e-2,
                              max_accuracy_drop=0.01),
        "int8": Thresholds(min_top1_agreement=0.95, max_accuracy_drop=0.01),
        "half": Thresholds(min_top1_agreement=0.97, max_accuracy_drop=0.01),
    }


class ExportConfig(BaseModel):
    """What to export and how strictly to check it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    formats: list[Format] = ["hf", "onnx", "onnx-int8"]
    """`hf`: half-precision safetensors folder; `onnx`: float32 ONNX with a key/value cache;
    `onnx-int8`: the ONNX graph with int8 weights (implies `onnx`)."""
    dtype: Literal["float16", "bfloat16"] = "float16"
    """Weight dtype of the `hf` folder."""
    opset: int = Field(default=18, ge=17)
    """ONNX opset of the exported graph."""
    per_channel: bool = True
    """int8 scales per output channel (closer to float32) instead of one per weight matrix."""
    prompts_per_task: int = Field(default=25, ge=1)
    """Held-out prompts per task family for the parity check and task accuracy."""
    compared_prompts: int = Field(default=16, ge=1)
    """Prompts (spread over the families) along whose greedy continuation logits are compared."""
    max_new_tokens: int = Field(default=32, ge=1)
    """Longest greedy answer generated per prompt."""
    seed: int = 0
    """Seed of the held-out prompts."""
    thresholds: dict[Literal["float32", "int8", "half"], Thresholds] = Field(
        default_factory=_default_thresholds)
    """Parity thresholds of each kind of variant (see docs/export.md for why these values)."""
    allow_parity_failure: bool = False
    """Finish without raising when a variant fails parity (it is still set aside in failed/)."""


def make_export_config(**fields: Any) -> ExportConfig:
    """An ExportConfig from loose options (the CLI's); ExportError names a bad one."""
    aliases = {"fp16": "float16", "bf16": "bfloat16"}
    if "dtype" in fields:
        fields["dtype"] = aliases.get(fields["dtype"], fields["dtype"])
    try:
        return ExportConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise ExportError("bad export option: " + "; ".join(problems) + " (dtype: fp16 or bf16; "
                          "format: hf, onnx or onnx-int8)") from None


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
    if not source.is_dir():
        raise ExportError(f"{source} does not exist; pass a run folder (runs/NAME) or a model "
                          "folder written by save_pretrained")
    raise ExportError(f"{source} is neither a run folder (no student/config.json) nor a model "
                      "folder (no config.json); pass runs/NAME after `distil train`, or a folder "
                      "written by save_pretrained")


def export_run(source: str | Path, config: ExportConfig | None = None,
               out: str | Path | None = None) -> ExportResult:
    """Export the student of a run (or a model folder), check parity, write parity.json."""
    from distil.models import load_model

    config = config or ExportConfig()
    model_dir, out_dir = resolve_export_paths(source, out)
    loaded = load_model(str(model_dir), "student", dtype="float32")
    formats = _with_dependencies(config.formats)
    with atomic_directory(out_dir) as tmp, progress_bar() as bar:
        task = bar.add_task("export", total=2 * len(formats) + 1)
        written = _write_formats(loaded, tmp, formats, config, bar, task)
        parity = _check_variants(loaded, written, config, bar, task)
        parity["source"] = str(model_dir)
        _set_aside_failures(tmp, parity)
        atomic_write_json(tmp / "parity.json", parity)
    show_parity(parity, out_dir)
    deployable = {name: out_dir / v["path"] for name, v in parity["variants"].items() if v["passed"]}
    result = ExportResult(out_dir, deployable, parity)
    if not result.passed and not config.allow_parity_failure:
        raise ParityError(_failure_message(parity, out_dir))
    return result


def _with_dependencies(formats: list[Format]) -> list[Format]:
    wanted = set(formats) | ({"onnx"} if "onnx-int8" in formats else set())
    return [f for f in ("hf", "onnx", "onnx-int8") if f in wanted]


def _write_formats(loaded: Any, tmp: Path, formats: list[Format], config: ExportConfig,
                   bar: Any, task: Any) -> dict[str, tuple[str, Path]]:
    """Write each format; return variant name -> (threshold kind, folder)."""
    from distil.export.hf import export_hf
    from distil.export.onnx import export_onnx, quantize_int8

    written: dict[str, tuple[str, Path]] = {}
    for fmt in formats:
        bar.update(task, description=f"export {fmt}")
        if fmt == "hf":
            name = f"hf-{config.dtype}"
            written[name] = ("half", export_hf(loaded, tmp / name, config.dtype))
        elif fmt == "onnx":
            written["onnx"] = ("float32", export_onnx(loaded, tmp / "onnx", config.opset))
        else:
            written["onnx-int8"] = ("int8", quantize_int8(tmp / "onnx", tmp / "onnx-int8",
                                                          config.per_channel))
        bar.advance(task)
    return written


def _open_variant(kind: str, folder: Path, dtype: str) -> Variant:
    if kind == "half":
        from distil.models import load_model

        return TorchVariant(load_model(str(folder), "student", dtype=dtype))
    from distil.export.runtime import OnnxGenerator

    return OnnxGenerator(folder)


def held_out_prompts(tokenizer: Any, per_task: int, seed: int) -> tuple[list[Any], list[list[int]]]:
    """Held-out task items, interleaved across families, and their rendered prompt ids."""
    from distil.tasks import generate_items

    items = generate_items("heldout", per_task, seed)
    order = sorted(range(len(items)), key=lambda i: (i % per_task, i // per_task))
    items = [items[i] for i in order]
    ids = []
    for item in items:
        text, add_special = render_prompt(tokenizer, item.prompt, "auto")
        ids.append(tokenizer(text, add_special_tokens=add_special).input_ids)
    return items, ids


def _check_variants(loaded: Any, written: dict[str, tuple[str, Path]], config: ExportConfig,
                    bar: Any, task: Any) -> dict[str, Any]:
    from distil.tasks import accuracy

    tokenizer = loaded.tokenizer
    items, prompt_ids = held_out_prompts(tokenizer, config.prompts_per_task, config.seed)
    bar.update(task, description="parity: reference")
    reference_model = TorchVariant(loaded)
    reference = reference_outputs(reference_model, prompt_ids, config.compared_prompts,
                                  config.max_new_tokens, tokenizer.eos_token_id)

    def decode(answers: list[list[int]]) -> list[str]:
        return [tokenizer.decode(ids, skip_special_tokens=True) for ids in answers]

    reference_accuracy = accuracy(items, decode(reference.continuations))
    bar.advance(task)
    variants = {}
    for name, (kind, folder) in written.items():
        bar.update(task, description=f"parity: {name}")
        variant = _open_variant(kind, folder, config.dtype)
        figures = logit_agreement(reference.logits, variant_logits(variant, reference))
        answers = generate_in_batches(variant, prompt_ids, config.max_new_tokens)
        figures["accuracy"] = accuracy(items, decode(answers))
        figures["accuracy_delta"] = figures["accuracy"]["overall"] - reference_accuracy["overall"]
        limits = config.thresholds[kind].model_dump()
        failures = check_thresholds(figures, limits)
        variants[name] = {"path": folder.name, "kind": kind, **figures, "thresholds": limits,
                          "failures": failures, "passed": not failures}
        bar.advance(task)
    return {"passed": all(v["passed"] for v in variants.values()),
            "reference": {"dtype": "float32", "runtime": "pytorch", "accuracy": reference_accuracy},
            "prompts": len(prompt_ids), "compared_prompts": len(reference.logits),
            "max_new_tokens": config.max_new_tokens, "seed": config.seed,
            "variants": variants, "distil_version": __version__}


def generate_in_batches(variant: Variant, prompt_ids: list[list[int]], max_new_tokens: int,
                        batch_size: int = 16) -> list[list[int]]:
    """Greedy continuations of all prompts, `batch_size` at a time."""
    answers: list[list[int]] = []
    for start in range(0, len(prompt_ids), batch_size):
        answers += variant.generate_ids(prompt_ids[start: start + batch_size], max_new_tokens)
    return answers


def _set_aside_failures(tmp: Path, parity: dict[str, Any]) -> None:
    """Move each failed variant to failed/NAME, so that only passing files look deployable."""
    for name, figures in parity["variants"].items():
        if not figures["passed"]:
            (tmp / "failed").mkdir(exist_ok=True)
            (tmp / figures["path"]).rename(tmp / "failed" / name)
            figures["path"] = f"failed/{name}"
    parity["deployable"] = [n for n, v in parity["variants"].items() if v["passed"]]


def show_parity(parity: dict[str, Any], out_dir: Path) -> None:
    """Print the parity table; failures in red."""
    from rich.table import Table

    table = Table(title=f"parity vs PyTorch float32 ({parity['prompts']} held-out prompts)")
    for column in ("variant", "max |Δ logit|", "top-1 agree", "accuracy", "Δ accuracy", "verdict"):
        table.add_column(column)
    reference = parity["reference"]["accuracy"]["overall"]
    table.add_row("pytorch float32", "-", "-", f"{reference:.1%}", "-", "reference")
    for name, v in parity["variants"].items():
        verdict = "[green]passed" if v["passed"] else "[bold red]FAILED: " + "; ".join(v["failures"])
        table.add_row(name, f"{v['max_abs_logit_diff']:.2e}", f"{v['top1_agreement']:.2%}",
                      f"{v['accuracy']['overall']:.1%}", f"{v['accuracy_delta']:+.1%}", verdict)
    console.print(table)
    console.print(f"parity written to {out_dir / 'parity.json'}")


def _failure_message(parity: dict[str, Any], out_dir: Path) -> str:
    failed = [f"{name} ({'; '.join(v['failures'])})" for name, v in parity["variants"].items()
              if not v["passed"]]
    return (f"parity check failed for {', '.join(failed)}; moved to {out_dir / 'failed'} and not "
            "deployable. Retrain or re-export (e.g. per-channel int8), or pass "
            "--allow-parity-failure to keep the other variants and exit 0")
