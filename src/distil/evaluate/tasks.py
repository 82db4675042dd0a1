"""Task accuracy by generation: teacher and student answer held-out task prompts greedily.

Each family's checker grades the answers (`distil.tasks`). The teacher's answers depend only
on the teacher and the prompts, so they are cached by a key of both and reused across the
students of one run (e.g. the `--compare` variants).
"""

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distil.fsutil import atomic_write_json, atomic_write_text
from distil.models import LoadedModel, tokenizer_hash
from distil.recipe import EvalSection
from distil.tasks import TaskItem, accuracy, check, generate_items
from distil.teachers import LocalTeacher, Prompt, Sampling


def heldout_items(config: EvalSection, seed: int) -> list[TaskItem]:
    """The held-out prompts the recipe's eval section asks for."""
    return generate_items("heldout", config.per_task, seed=seed, tasks=config.tasks)


def answer(
    model: LoadedModel, prompts: Sequence[Prompt], config: EvalSection, label: str
) -> tuple[list[str], float]:
    """Greedy answers of `model` to `prompts`, and generated tokens per second."""
    generator = LocalTeacher(model, batch_size=config.generation_batch_size, show_progress=True, label=label)
    started = time.perf_counter()
    completions = generator.generate(list(prompts), Sampling(max_new_tokens=config.max_new_tokens))
    seconds = time.perf_counter() - started
    tokens = sum(c.usage.completion_tokens for c in completions)
    return [c.text for c in completions], tokens / max(seconds, 1e-9)


def teacher_answers(
    teacher: LoadedModel, items: list[TaskItem], config: EvalSection, cache: Path | None
) -> tuple[list[str], float]:
    """The teacher's answers, from `cache` when it holds them for this teacher and these prompts."""
    key = _cache_key(teacher, items, config)
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["answers"], saved["tokens_per_s"]
    answers, speed = answer(teacher, [item.prompt for item in items], config, "teacher answers")
    if cache is not None:
        atomic_write_json(cache, {"key": key, "answers": answers, "tokens_per_s": speed})
    return answers, speed


def score_tasks(
    teacher: LoadedModel,
    students: dict[str, LoadedModel],
    config: EvalSection,
    seed: int,
    samples_path: Path,
    cache: Path | None = None,
) -> dict[str, Any]:
    """Accuracy per family of the teacher and of each student (by role: `student`, and
    `untrained_student` when the baseline is evaluated), the student's retention, and every
    answer in `samples_path`."""
    items = heldout_items(config, seed)
    prompts = [item.prompt for item in items]
    answers = {"teacher": teacher_answers(teacher, items, config, cache)}
    for role, model in students.items():
        answers[role] = answer(model, prompts, config, f"{role.replace('_', ' ')} answers")
    rows = [{"task": item.task, "prompt": item.prompt, "reference": item.answer} for item in items]
    scores: dict[str, Any] = {}
    for role, (texts, speed) in answers.items():
        by_task = accuracy(items, texts)
        scores[role] = {
            "accuracy": by_task["overall"],
            "accuracy_per_task": by_task,
            "eval_batched_greedy_tokens_per_s": speed,
        }
        for row, item, text in zip(rows, items, texts, strict=True):
            row.update({role: text, f"{role}_correct": check(item.task, item.prompt, text)})
    atomic_write_text(samples_path, "".join(json.dumps(r) + "\n" for r in rows))
    teacher_accuracy = scores["teacher"]["accuracy"]
    return {
        **scores,
        "heldout_prompts": len(items),
        "retention": scores["student"]["accuracy"] / teacher_accuracy if teacher_accuracy else 0.0,
    }


def _cache_key(teacher: LoadedModel, items: list[TaskItem], config: EvalSection) -> str:
    payload = json.dumps(
        {
            "teacher": teacher.source,
            "revision": teacher.revision,
            "tokenizer": tokenizer_hash(teacher.tokenizer),
            "prompts": [i.prompt for i in items],
            "max_new_tokens": config.max_new_tokens,
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()
