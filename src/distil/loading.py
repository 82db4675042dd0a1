"""What several stages load the same way: the recipe's models and its data splits.

The teacher is opened by the one factory (distil.teachers.open_teacher), in this process:
the stages that call `load_models` read its logits. The data is read whole into memory
(`load_splits`), or with `data.streaming` as a stream (`open_stream`, distil.streaming);
`held_out_pairs` gives the evaluation's rows either way.
"""

from pathlib import Path
from typing import Any

import torch

from distil.data import Pair, load_pairs, split_pairs
from distil.errors import DataError
from distil.models import LoadedModel, load_model, output_vocab_size, shared_vocab_size
from distil.recipe import DataSection, Recipe
from distil.recipe.models import STUDENT_TRAINING
from distil.recipe.signal import teacher_signal
from distil.streaming import RowStream
from distil.teachers import open_teacher, white_box


def load_models(
    recipe: Recipe,
    device: torch.device,
    need_teacher: bool = True,
    student_source: str | None = None,
    purpose: str = "this stage",
    hidden_states: bool = False,
) -> tuple[LoadedModel | None, LoadedModel, int]:
    """Teacher (unless not needed), student and the vocabulary width their logits share.

    `student_source` replaces the recipe's student model (e.g. the trained run/student).
    The teacher runs in this process (teacher.model, whatever teacher.api says); `purpose`
    names what needs its logits (and, with `hidden_states`, its hidden states) in the refusal
    of a teacher that gives none. With `cross_tokenizer.method` set the two may have
    different vocabularies, and the width is the student's own.
    """
    student = load_student(recipe, device, student_source)
    if not need_teacher:
        return None, student, output_vocab_size(student.model)
    teacher = white_box(
        open_teacher(recipe.teacher, in_process=True, device=device, seed=recipe.seed), purpose, hidden_states
    )
    set_chat_template(teacher.tokenizer, recipe.data.chat_template)
    if teacher_signal(recipe).cross:
        return teacher, student, output_vocab_size(student.model)
    return teacher, student, shared_vocab_size(teacher, student)


def load_student(recipe: Recipe, device: torch.device, student_source: str | None = None) -> LoadedModel:
    """The recipe's student (or `student_source`), with data.chat_template."""
    student_spec = recipe.student.model_dump(exclude=set(STUDENT_TRAINING))
    if student_source is not None and student_source != recipe.student.model:
        # a trained student was saved with its layers already selected
        student_spec.update(model=student_source, layers=None)
    student = load_model(role="student", device=device, seed=recipe.seed, **student_spec)
    set_chat_template(student.tokenizer, recipe.data.chat_template)
    return student


def set_chat_template(tokenizer: Any, path: str | None) -> None:
    """Give `tokenizer` the Jinja chat template in file `path` (data.chat_template), if any."""
    if path is None:
        return
    try:
        tokenizer.chat_template = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(
            f"data.chat_template {path!r} cannot be read ({type(err).__name__}); "
            "point it at a Jinja template file"
        ) from None


def open_stream(data: DataSection, seed: int) -> RowStream | None:
    """The training rows as a stream when `data.streaming` (its first row read and checked
    now), else None."""
    return RowStream(data, seed) if data.streaming else None


def held_out_pairs(data: DataSection, seed: int, limit: int | None) -> list[Pair]:
    """The first `limit` held-out pairs (all without one); a stream is read only as far as
    it takes to find them."""
    if data.streaming:
        return RowStream(data, seed).held_out(limit)
    return load_splits(data, seed)[1][:limit]


def load_splits(data: DataSection, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Training and held-out pairs in memory: `data.eval` if given, else a seeded split of
    `data.train`."""
    pairs = _load(data, data.train, data.split)
    if data.eval:
        return pairs, _load(data, data.eval, data.eval_split)
    return split_pairs(pairs, data.eval_fraction, seed)


def _load(data: DataSection, source: str, split: str) -> list[Pair]:
    return load_pairs(
        source,
        data.prompt_field,
        data.response_field,
        data.messages_field,
        data.format,
        data.system_prompt,
        split,
    )
