"""Does an exported model still answer like the PyTorch one? Logit parity and task accuracy.

The float32 PyTorch model is the reference. On held-out task prompts it generates greedily
(Hugging Face `generate`); each variant then reads the same prompt + continuation through
its own cache path, and its logits at every continuation position are compared with the
reference's (max absolute difference, share of positions with the same top-1 token). Each
variant also answers every prompt greedily by itself, and its task accuracy is compared
with the reference's. A format may check a variant its own way first (GGUF: read back and
compared with the model, `gguf_check`); without its runtime (llama.cpp for GGUF), only that
check runs and the runtime check is marked skipped. The formats and how each opens a
variant come from `distil.export_formats`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from distil import __version__
from distil.data import render_prompt
from distil.export_formats import ExportFormat, VariantSpec, missing_runtime, resolve
from distil.models import LoadedModel

if TYPE_CHECKING:
    from distil.recipe import ExportSection


class Variant(Protocol):
    """What parity needs from a model: logits along a given continuation, and greedy ids."""

    def continuation_logits(
        self, prompt_ids: Sequence[int], continuation_ids: Sequence[int]
    ) -> np.ndarray: ...

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]: ...


class TorchVariant:
    """A PyTorch model behind the `Variant` interface (the reference, or a half-precision copy)."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 16) -> None:
        self.model = loaded.model.eval()
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size

    @torch.no_grad()
    def continuation_logits(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int]) -> np.ndarray:
        """Full-sequence forward; logits predicting each continuation token, (C, V) float32."""
        ids = torch.tensor([list(prompt_ids) + list(continuation_ids)])
        logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        start = len(prompt_ids) - 1
        return logits[start : start + len(continuation_ids)].float().numpy()

    @torch.no_grad()
    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations by `model.generate`, left-padded batches, eos and after dropped."""
        pad = self.tokenizer.pad_token_id
        configured = self.model.generation_config.eos_token_id
        eos = set(_as_list(self.tokenizer.eos_token_id if configured is None else configured))
        outputs: list[list[int]] = []
        for start in range(0, len(prompt_ids), self.batch_size):
            chunk = prompt_ids[start : start + self.batch_size]
            length = max(len(p) for p in chunk)
            ids = torch.tensor([[pad] * (length - len(p)) + list(p) for p in chunk])
            mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in chunk])
            generated = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
            )
            for row in generated[:, length:].tolist():
                cut = next((i for i, token in enumerate(row) if token in eos), len(row))
                outputs.append(row[:cut])
        return outputs


@dataclass(frozen=True)
class Reference:
    """The reference's greedy continuations of the prompts, and its logits along them."""

    prompt_ids: list[list[int]]
    continuations: list[list[int]]
    """Greedy continuations of every prompt, without their eos."""
    paths: list[list[int]]
    """Compared tokens of the first prompts: the continuation and the eos that ended it."""
    logits: list[np.ndarray]
    """(len(path_i), V) logits predicting each token of `paths[i]`."""


def reference_outputs(
    reference: Variant, prompt_ids: list[list[int]], compared: int, max_new_tokens: int, eos_token_id: int
) -> Reference:
    """Greedy continuations of every prompt; logits along the first `compared` of them."""
    continuations = reference.generate_ids(prompt_ids, max_new_tokens)
    paths = [c if len(c) == max_new_tokens else c + [eos_token_id] for c in continuations[:compared]]
    logits = [reference.continuation_logits(p, path) for p, path in zip(prompt_ids, paths, strict=False)]
    return Reference(prompt_ids, continuations, paths, logits)


def variant_logits(variant: Variant, reference: Reference) -> list[np.ndarray]:
    """The variant's logits along the reference's compared paths."""
    return [
        variant.continuation_logits(p, path)
        for p, path in zip(reference.prompt_ids, reference.paths, strict=False)
    ]


def logit_agreement(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, Any]:
    """Max |logit difference| and top-1 agreement over all positions of all sequences.

    reference[i], candidate[i]: (C_i, V) logits of the same positions. Columns beyond the
    narrower width (padded heads) are left out.
    """
    if len(reference) != len(candidate) or not reference:
        raise ValueError(
            f"need the same, non-zero number of sequences ({len(reference)} vs {len(candidate)})"
        )
    width = min(min(r.shape[-1] for r in reference), min(c.shape[-1] for c in candidate))
    ref = np.concatenate([r[:, :width] for r in reference]).astype(np.float64)  # (N, V)
    cand = np.concatenate([c[:, :width] for c in candidate]).astype(np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"position counts differ: {ref.shape[0]} vs {cand.shape[0]}")
    return {
        "max_abs_logit_diff": float(np.abs(ref - cand).max()),
        "top1_agreement": float((ref.argmax(-1) == cand.argmax(-1)).mean()),
        "positions": int(ref.shape[0]),
    }


def check_thresholds(figures: dict[str, Any], limits: dict[str, float | None]) -> list[str]:
    """Every threshold a variant misses, as readable phrases (empty: it passed).

    limits: `min_top1_agreement`, `max_abs_logit_diff`, `max_accuracy_drop`; None skips one.
    """
    failures = []
    low = limits.get("min_top1_agreement")
    if low is not None and figures["top1_agreement"] < low:
        failures.append(f"top-1 agreement {figures['top1_agreement']:.2%} < {low:.2%}")
    high = limits.get("max_abs_logit_diff")
    if high is not None and figures["max_abs_logit_diff"] > high:
        failures.append(f"max |logit diff| {figures['max_abs_logit_diff']:.3g} > {high:.3g}")
    drop = limits.get("max_accuracy_drop")
    graded = figures.get("accuracy_delta") is not None
    if drop is not None and graded and -figures["accuracy_delta"] > drop + 1e-12:
        failures.append(
            f"accuracy {figures['accuracy']:.1%} is "
            f"{-figures['accuracy_delta']:.1%} below the reference (> {drop:.1%})"
        )
    return failures


def held_out_prompts(
    tokenizer: Any, per_task: int, seed: int, tasks: list[str] | None = None
) -> tuple[list[Any], list[list[int]]]:
    """Held-out task items of `tasks` (none: every default family), interleaved across
    families, and their rendered prompt ids."""
    from distil.tasks import generate_items

    items = generate_items("heldout", per_task, seed, tasks=tasks or None)
    order = sorted(range(len(items)), key=lambda i: (i % per_task, i // per_task))
    items = [items[i] for i in order]
    ids = []
    for item in items:
        text, add_special = render_prompt(tokenizer, item.prompt, "auto")
        ids.append(tokenizer(text, add_special_tokens=add_special).input_ids)
    return items, ids


def open_torch(folder: Path, config: "ExportSection") -> Variant:
    """A half-precision Hugging Face folder, run by PyTorch in export.dtype."""
    from distil.models import load_model

    return TorchVariant(load_model(str(folder), "student", dtype=config.dtype))


def open_onnx(folder: Path, config: "ExportSection") -> Variant:
    """An ONNX folder, run by onnxruntime."""
    from distil.onnx_runtime import OnnxGenerator

    return OnnxGenerator(folder)


def open_llama_cpp(folder: Path, config: "ExportSection") -> Variant:
    """A GGUF folder, run by llama.cpp."""
    from distil.llama_runtime import LlamaCppGenerator

    return LlamaCppGenerator(folder)


@dataclass(frozen=True)
class Written:
    """A variant the export wrote: its format, its spec, and where it is."""

    format: ExportFormat
    spec: VariantSpec
    folder: Path


def generate_in_batches(
    variant: Variant, prompt_ids: list[list[int]], max_new_tokens: int, batch_size: int = 16
) -> list[list[int]]:
    """Greedy continuations of all prompts, `batch_size` at a time."""
    answers: list[list[int]] = []
    for start in range(0, len(prompt_ids), batch_size):
        answers += variant.generate_ids(prompt_ids[start : start + batch_size], max_new_tokens)
    return answers


def check_variants(
    loaded: Any, written: list[Written], config: "ExportSection", bar: Any, task: Any
) -> dict[str, Any]:
    """Parity of each written variant against the float32 model; the parity.json record."""
    from distil.tasks import accuracy

    tokenizer = loaded.tokenizer
    graded = config.tasks != []  # the recipe evaluates no task family: grade none
    items, prompt_ids = held_out_prompts(tokenizer, config.prompts_per_task, config.seed, config.tasks)
    bar.update(task, description="parity: reference")
    reference = reference_outputs(
        TorchVariant(loaded),
        prompt_ids,
        config.compared_prompts,
        config.max_new_tokens,
        tokenizer.eos_token_id,
    )

    def decode(answers: list[list[int]]) -> list[str]:
        return [tokenizer.decode(ids, skip_special_tokens=True) for ids in answers]

    reference_accuracy = accuracy(items, decode(reference.continuations)) if graded else {"overall": None}
    bar.advance(task)

    def measure(variant: Variant) -> dict[str, Any]:
        figures = logit_agreement(reference.logits, variant_logits(variant, reference))
        if not graded:
            return {**figures, "accuracy": None, "accuracy_by_task": None, "accuracy_delta": None}
        answers = generate_in_batches(variant, prompt_ids, config.max_new_tokens)
        by_task = accuracy(items, decode(answers))
        figures.update(accuracy=by_task.pop("overall"), accuracy_by_task=by_task)
        figures["accuracy_delta"] = figures["accuracy"] - reference_accuracy["overall"]
        return figures

    variants = []
    for variant in written:
        bar.update(task, description=f"parity: {variant.spec.name}")
        variants.append(variant_record(loaded, variant, config, measure))
        bar.advance(task)
    return {
        "passed": all(v["passed"] for v in variants),
        "reference": {
            "dtype": "float32",
            "runtime": "pytorch",
            "accuracy": reference_accuracy.pop("overall"),
            "accuracy_by_task": reference_accuracy,
        },
        "prompts": len(prompt_ids),
        "compared_prompts": len(reference.logits),
        "max_new_tokens": config.max_new_tokens,
        "seed": config.seed,
        "variants": variants,
        "distil_version": __version__,
    }


def variant_record(
    loaded: Any, variant: Written, config: "ExportSection", measure: Callable[[Variant], dict[str, Any]]
) -> dict[str, Any]:
    """One variant's parity.json entry: the format's own check, then its runtime's figures
    (`measure` of the opened variant) against its thresholds, unless the runtime is missing."""
    fmt, spec = variant.format, variant.spec
    limits = config.thresholds[spec.kind].model_dump()
    fields, failures = resolve(fmt.check)(loaded, variant.folder, config) if fmt.check else ({}, [])
    missing = missing_runtime(fmt)
    if missing:
        figures = {"runtime": None, **dict.fromkeys(RUNTIME_FIGURES), "runtime_check": f"skipped: {missing}"}
    else:
        figures = {
            "runtime": fmt.runtime,
            **measure(resolve(fmt.open)(variant.folder, config)),
            "runtime_check": "done",
        }
        failures = failures + check_thresholds(figures, limits)
    return {
        "name": spec.name,
        "path": variant.folder.name,
        "format": fmt.name,
        "kind": spec.kind,
        **figures,
        **fields,
        "thresholds": limits,
        "failures": failures,
        "passed": not failures,
    }


RUNTIME_FIGURES = (
    "max_abs_logit_diff",
    "top1_agreement",
    "positions",
    "accuracy",
    "accuracy_by_task",
    "accuracy_delta",
)
"""What a runtime check measures, None when it was skipped."""


def _as_list(value: Any) -> list[int]:
    return value if isinstance(value, list) else [value]
