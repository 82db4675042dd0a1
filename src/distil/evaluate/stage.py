"""Held-out evaluation of a student against its teacher, written to eval.json.

    distil eval recipes/tiny.yaml            # the trained student in runs/NAME/student
    distil eval recipes/tiny.yaml --student recipe   # the recipe's student before training

Per response token (teacher-forced on the held-out responses): forward KL(teacher ||
student) at temperature 1, top-1 agreement (same argmax), and each model's perplexity on
the reference response; plus parameter counts.
"""

import math
import time
from pathlib import Path
from typing import Any

import torch

from distil import __version__
from distil.data import collate, encode_pairs
from distil.errors import DataError, ModelError
from distil.evaluate.tasks import score_tasks
from distil.fsutil import atomic_write_json
from distil.loading import load_models, load_splits
from distil.losses import IGNORE_INDEX, forward_kl, token_cross_entropy
from distil.machine import describe_machine
from distil.models import count_parameters
from distil.progress import progress_bar
from distil.recipe import Recipe


def trained_student_dir(recipe: Recipe) -> Path:
    """Where the training stage leaves the final student."""
    return recipe.run_dir / "student"


def evaluate(recipe: Recipe, student_source: str | None = None, output: Path | None = None,
             teacher_cache: Path | None = None) -> dict[str, Any]:
    """Compare student and teacher on held-out rows (and tasks); write and return the metrics.

    With `eval.tasks`, both models also answer held-out task prompts by greedy generation:
    accuracy per family and retention (student / teacher accuracy) join the metrics, every
    answer goes to eval_samples.jsonl beside the metrics, and the teacher's answers are
    cached in `teacher_cache` (default RUN/teacher_answers.json).
    """
    source = student_source or str(trained_student_dir(recipe))
    if student_source is None and not Path(source).is_dir():
        raise ModelError(f"no trained student in {source}; run `distil train` first, or pass "
                         "--student recipe to evaluate the recipe's untrained student")
    if source == "recipe":
        source = recipe.student.model
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, held_out = load_splits(recipe.data, recipe.seed)  # bad data fails before any model loads
    teacher, student, vocab = load_models(recipe, device, student_source=source,
                                          purpose="evaluation (KL to the teacher, its answers)")
    if not held_out:
        raise DataError("no held-out rows to evaluate on; set data.eval or data.eval_fraction > 0")
    held_out = held_out[: recipe.eval.max_samples]
    examples = encode_pairs(student.tokenizer, held_out, recipe.data.template,
                            recipe.data.max_length)
    if recipe.cross_tokenizer.method == "off":
        totals = _accumulate(teacher.model, student.model, examples, vocab,
                             recipe.eval.batch_size, student.tokenizer.pad_token_id)
        metrics = summarise(totals)
    else:  # no token-by-token comparison: each model on its own tokens
        metrics = _own_tokens_metrics(recipe, teacher, student, held_out)
    metrics.update({
        "student": {"model": source, "params": count_parameters(student.model),
                    "perplexity": metrics.pop("student_perplexity")},
        "teacher": {"model": recipe.teacher.model, "params": count_parameters(teacher.model),
                    "perplexity": metrics.pop("teacher_perplexity")},
        "samples": len(examples),
        "distil_version": __version__,
        "machine": describe_machine(),  # results move with the CPU's instruction set
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    output = Path(output or recipe.run_dir / "eval.json")
    if recipe.eval.tasks:
        scores = score_tasks(teacher, student, recipe.eval, recipe.seed,
                             output.with_name("eval_samples.jsonl"),
                             teacher_cache or recipe.run_dir / "teacher_answers.json")
        for role in ("teacher", "student"):
            metrics[role].update(scores.pop(role))
        metrics.update(scores)
    atomic_write_json(output, metrics)
    return metrics


@torch.no_grad()
def _accumulate(teacher: Any, student: Any, examples: list, vocab: int, batch_size: int,
                pad_token_id: int) -> dict[str, float]:
    teacher.eval()
    student.eval()
    device = next(student.parameters()).device
    totals = {"tokens": 0.0, "kl": 0.0, "agree": 0.0, "student_nll": 0.0, "teacher_nll": 0.0}
    with progress_bar() as bar:
        task = bar.add_task("eval", total=len(examples))
        for start in range(0, len(examples), batch_size):
            chunk = examples[start: start + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk, pad_token_id).items()}
            labels = batch["labels"][:, 1:]
            mask = labels != IGNORE_INDEX
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            s_logits = student(**inputs).logits[:, :-1][mask][:, :vocab].float()  # (N, V)
            t_logits = teacher(**inputs).logits[:, :-1][mask][:, :vocab].float()
            targets = labels[mask]
            totals["tokens"] += targets.numel()
            totals["kl"] += forward_kl(s_logits, t_logits).sum().item()
            totals["agree"] += (s_logits.argmax(-1) == t_logits.argmax(-1)).sum().item()
            totals["student_nll"] += token_cross_entropy(s_logits, targets).sum().item()
            totals["teacher_nll"] += token_cross_entropy(t_logits, targets).sum().item()
            bar.update(task, advance=len(chunk))
    return totals


def _own_tokens_metrics(recipe: Recipe, teacher: Any, student: Any, held_out: list) -> dict[str, Any]:
    """Perplexities of two models of different tokenizers, each on its own tokens; KL and
    top-1 agreement need one vocabulary and are None."""
    found = {}
    for role, loaded in (("student", student), ("teacher", teacher)):
        examples = encode_pairs(loaded.tokenizer, held_out, recipe.data.template,
                                recipe.data.max_length)
        width = loaded.model.get_output_embeddings().weight.shape[0]
        totals = _accumulate(loaded.model, loaded.model, examples, width,
                             recipe.eval.batch_size, loaded.tokenizer.pad_token_id)
        found[f"{role}_perplexity"] = summarise(totals)["student_perplexity"]
        found.setdefault("tokens", int(totals["tokens"]))
    return {"kl_teacher_student": None, "top1_agreement": None, **found}


def summarise(totals: dict[str, float]) -> dict[str, float]:
    """Token means from the accumulated sums."""
    n = max(totals["tokens"], 1.0)
    return {
        "kl_teacher_student": totals["kl"] / n,
        "top1_agreement": totals["agree"] / n,
        "student_perplexity": math.exp(totals["student_nll"] / n),
        "teacher_perplexity": math.exp(totals["teacher_nll"] / n),
        "tokens": int(totals["tokens"]),
    }
