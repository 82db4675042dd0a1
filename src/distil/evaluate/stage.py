"""Held-out evaluation of a student against its teacher, written to eval.json.

    distil eval recipes/tiny.yaml            # the trained student in runs/NAME/student
    distil eval recipes/tiny.yaml --student recipe   # the recipe's student before training

Per response token (teacher-forced on the held-out responses): forward KL(teacher ||
student) at temperature 1, top-1 agreement (same argmax), and each model's perplexity on
the reference response; plus parameter counts. The recipe's untrained student is measured
the same way beside the trained one (`eval.baseline`), and every model answers a few
held-out prompts for the report (`eval.sample_answers`).
"""

import math
import time
from pathlib import Path
from typing import Any

import torch

from distil import __version__
from distil.batching import collate
from distil.data import Example, Pair, encode_pairs
from distil.errors import DataError, ModelError
from distil.evaluate.samples import sample_answers
from distil.evaluate.tasks import score_tasks
from distil.fsutil import atomic_write_json
from distil.loading import held_out_pairs, load_models
from distil.losses import IGNORE_INDEX, forward_kl, token_cross_entropy
from distil.machine import describe_machine
from distil.models import LoadedModel, count_parameters
from distil.progress import progress_bar
from distil.recipe import Recipe


def trained_student_dir(recipe: Recipe) -> Path:
    """Where the training stage leaves the final student."""
    return recipe.run_dir / "student"


def evaluate(
    recipe: Recipe,
    student_source: str | None = None,
    output: Path | None = None,
    teacher_cache: Path | None = None,
) -> dict[str, Any]:
    """Compare student and teacher on held-out rows (and tasks); write and return the metrics.

    With `eval.baseline`, the recipe's untrained student is measured beside the trained one
    (`untrained_student`). With `eval.tasks`, the models also answer held-out task prompts by
    greedy generation: accuracy per family and retention (student / teacher accuracy) join
    the metrics, every answer goes to eval_samples.jsonl beside the metrics, and the
    teacher's answers are cached in `teacher_cache` (default RUN/teacher_answers.json).
    `eval.sample_answers` held-out prompts are answered by every model for the report.
    """
    source = student_source or str(trained_student_dir(recipe))
    if student_source is None and not Path(source).is_dir():
        raise ModelError(
            f"no trained student in {source}; run `distil train` first, or pass "
            "--student recipe to evaluate the recipe's untrained student"
        )
    if source == "recipe":
        source = recipe.student.model
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # bad data fails before any model loads
    held_out = held_out_pairs(recipe.data, recipe.seed, recipe.eval.max_samples)
    teacher, student, vocab = load_models(
        recipe, device, student_source=source, purpose="evaluation (KL to the teacher, its answers)"
    )
    if not held_out:
        raise DataError("no held-out rows to evaluate on; set data.eval or data.eval_fraction > 0")
    students = {"student": student}
    if recipe.eval.baseline and source != recipe.student.model:  # else it is the student itself
        students["untrained_student"] = load_models(recipe, device, need_teacher=False)[1]
    metrics = _forced_metrics(recipe, teacher, students, vocab, held_out)
    metrics["student"]["model"] = source
    metrics["teacher"]["model"] = recipe.teacher.model
    if "untrained_student" in metrics:
        metrics["untrained_student"]["model"] = recipe.student.model
    metrics.update(
        {
            "samples": metrics.pop("rows"),
            "distil_version": __version__,
            "machine": describe_machine(),  # results move with the CPU's instruction set
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    output = Path(output or recipe.run_dir / "eval.json")
    if recipe.eval.tasks:
        scores = score_tasks(
            teacher,
            students,
            recipe.eval,
            recipe.seed,
            output.with_name("eval_samples.jsonl"),
            teacher_cache or recipe.run_dir / "teacher_answers.json",
        )
        for role in ("teacher", *students):
            metrics[role].update(scores.pop(role))
        metrics.update(scores)
    metrics["sample_answers"] = sample_answers({"teacher": teacher, **students}, held_out, recipe.eval)
    atomic_write_json(output, metrics)
    return metrics


def _forced_metrics(
    recipe: Recipe, teacher: LoadedModel, students: dict[str, LoadedModel], vocab: int, held_out: list[Pair]
) -> dict[str, Any]:
    """Teacher-forced figures on the held-out rows: per role its parameters and perplexity;
    for each student also KL(teacher || it) and top-1 agreement (the trained student's at
    the top level, as eval.json has always had them); `tokens` and `rows` counted."""
    models = {"teacher": teacher, **students}
    metrics: dict[str, Any] = {
        role: {"params": count_parameters(loaded.model)} for role, loaded in models.items()
    }
    if recipe.cross_tokenizer.method != "off":  # no token-by-token comparison possible
        for role, loaded in (*students.items(), ("teacher", teacher)):
            examples = _examples(recipe, loaded, held_out)
            totals = _accumulate(
                loaded.model,
                {},
                examples,
                _width(loaded),
                recipe.eval.batch_size,
                loaded.tokenizer.pad_token_id,
            )
            metrics[role]["perplexity"] = summarise(totals)["teacher"]["perplexity"]
            metrics.setdefault("tokens", int(totals["tokens"]))
            metrics.setdefault("rows", len(examples))
            if role != "teacher":
                metrics[role].update(kl_teacher_student=None, top1_agreement=None)
    else:
        examples = _examples(recipe, students["student"], held_out)
        totals = _accumulate(
            teacher.model,
            {r: m.model for r, m in students.items()},
            examples,
            vocab,
            recipe.eval.batch_size,
            students["student"].tokenizer.pad_token_id,
        )
        for role, figures in summarise(totals).items():
            metrics[role].update(figures)
        metrics.update(tokens=int(totals["tokens"]), rows=len(examples))
    student = metrics["student"]
    metrics.update(
        kl_teacher_student=student.pop("kl_teacher_student"), top1_agreement=student.pop("top1_agreement")
    )
    return metrics


def _examples(recipe: Recipe, loaded: LoadedModel, held_out: list[Pair]) -> list[Example]:
    return encode_pairs(loaded.tokenizer, held_out, recipe.data.template, recipe.data.max_length)


def _width(loaded: LoadedModel) -> int:
    return loaded.model.get_output_embeddings().weight.shape[0]


@torch.no_grad()
def _accumulate(
    teacher: Any,
    students: dict[str, Any],
    examples: list[Example],
    vocab: int,
    batch_size: int,
    pad_token_id: int,
) -> dict[str, Any]:
    """Sums over the response tokens: the teacher's NLL, and for each student its NLL,
    KL(teacher || student) and top-1 agreements; the teacher's logits are computed once."""
    for model in (teacher, *students.values()):
        model.eval()
    device = next(teacher.parameters()).device
    totals: dict[str, Any] = {"tokens": 0.0, "teacher": {"nll": 0.0}}
    totals.update({role: {"nll": 0.0, "kl": 0.0, "agree": 0.0} for role in students})
    with progress_bar() as bar:
        task = bar.add_task("eval", total=len(examples))
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk, pad_token_id).items()}
            labels = batch["labels"][:, 1:]
            mask = labels != IGNORE_INDEX
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            t_logits = teacher(**inputs).logits[:, :-1][mask][:, :vocab].float()  # (N, V)
            targets = labels[mask]  # (N,)
            totals["tokens"] += targets.numel()
            totals["teacher"]["nll"] += token_cross_entropy(t_logits, targets).sum().item()
            for role, student in students.items():
                s_logits = student(**inputs).logits[:, :-1][mask][:, :vocab].float()  # (N, V)
                sums = totals[role]
                sums["kl"] += forward_kl(s_logits, t_logits).sum().item()
                sums["agree"] += (s_logits.argmax(-1) == t_logits.argmax(-1)).sum().item()
                sums["nll"] += token_cross_entropy(s_logits, targets).sum().item()
            bar.update(task, advance=len(chunk))
    return totals


def summarise(totals: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Token means from the accumulated sums, by role: each model's perplexity, and each
    student's KL(teacher || student) and top-1 agreement."""
    n = max(totals["tokens"], 1.0)
    figures: dict[str, dict[str, float]] = {}
    for role, sums in totals.items():
        if role == "tokens":
            continue
        figures[role] = {"perplexity": math.exp(sums["nll"] / n)}
        if "kl" in sums:
            figures[role].update(kl_teacher_student=sums["kl"] / n, top1_agreement=sums["agree"] / n)
    return figures
