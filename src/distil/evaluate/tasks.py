"""Task accuracy by generation: teacher and student answer held-out task prompts greedily.

Each family's checker grades the answers (`distil.tasks`). The teacher's answers depend only
on the teacher and the prompts, so they are cached by a key of both and reused across the
students of one run (e.g. the `--compare` variants).
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from distil.fsutil import atomic_write_json, atomic_write_text
from distil.models import LoadedModel, tokenizer_hash
from distil.recipe import EvalSection
from distil.tasks import TaskItem, accuracy, check, generate_items
from distil.teachers import LocalTeacher, Sampling


def heldout_items(config: EvalSection, seed: int) -> list[TaskItem]:
    """The held-out prompts the recipe's eval section asks for."""
    return generate_items("heldout", config.per_task, seed=seed, tasks=config.tasks)


def answer(model: LoadedModel, items: list[TaskItem], config: EvalSection,
           label: str) -> tuple[list[str], float]:
    """Greedy answers of `model` to the items' prompts, and generated tokens per second."""
    generator = LocalTeacher(model, batch_size=config.generation_batch_size, show_progress=True,
                             label=label)
    started = time.perf_counter()
    completions = generator.generate([item.prompt for item in items],
                                     Sampling(max_new_tokens=config.max_new_tokens))
    seconds = time.perf_counter() - started
    tokens = sum(c.usage.completion_tokens for c in completions)
    return [c.text for c in completions], tokens / max(seconds, 1e-9)


def teacher_answers(teacher: LoadedModel, items: list[TaskItem], config: EvalSection,
                    cache: Path | None) -> tuple[list[str], float]:
    """The teacher's answers, from `cache` when it holds them for this teacher and these prompts."""
    key = _cache_key(teacher, items, config)
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["answers"], saved["tokens_per_s"]
    answers, speed = answer(teacher, items, config, "teacher answers")
    if cache is not None:
        atomic_write_json(cache, {"key": key, "answers": answers, "tokens_per_s": speed})
    return answers, speed


def score_tasks(teacher: LoadedModel, student: LoadedModel, config: EvalSection, seed: int,
                samples_path: Path, cache: Path | None = None) -> dict[str, Any]:
    """Accuracy per family for both models, retention, and every answer in `samples_path`."""
    items = heldout_items(config, seed)
    teacher_out, teacher_speed = teacher_answers(teacher, items, config, cache)
    student_out, student_speed = answer(student, items, config, "student answers")
    teacher_acc, student_acc = accuracy(items, teacher_out), accuracy(items, student_out)
    rows = [{"task": item.task, "prompt": item.prompt, "reference": item.answer,
             "teacher": t, "teacher_correct": check(item.task, item.prompt, t),
             "student": s, "student_correct": check(item.task, item.prompt, s)}
            for item, t, s in zip(items, teacher_out, student_out, strict=True)]
    atomic_write_text(samples_path, "".join(json.dumps(r) + "\n" for r in rows))
    return {
        "teacher": {"accuracy": teacher_acc["overall"], "accuracy_per_task": teacher_acc,
                    "eval_batched_greedy_tokens_per_s": teacher_speed},
        "student": {"accuracy": student_acc["overall"], "accuracy_per_task": student_acc,
                    "eval_batched_greedy_tokens_per_s": student_speed},
        "retention": student_acc["overall"] / teacher_acc["overall"] if teacher_acc["overall"] else 0.0,
        "heldout_prompts": len(items),
    }


def _cache_key(teacher: LoadedModel, items: list[TaskItem], config: EvalSection) -> str:
    payload = json.dumps({"teacher": teacher.source, "revision": teacher.revision,
                          "tokenizer": tokenizer_hash(teacher.tokenizer),
                          "prompts": [i.prompt for i in items],
                          "max_new_tokens": config.max_new_tokens})
    return hashlib.sha256(payload.encode()).hexdigest()
