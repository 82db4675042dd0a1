"""What several stages load the same way: the recipe's models and its data splits."""

import torch

from distil.data import Pair, load_pairs, split_pairs
from distil.models import LoadedModel, load_model, output_vocab_size, shared_vocab_size
from distil.recipe import DataSection, Recipe


def load_models(recipe: Recipe, device: torch.device, need_teacher: bool = True,
                student_source: str | None = None) -> tuple[LoadedModel | None, LoadedModel, int]:
    """Teacher (unless not needed), student and the vocabulary width their logits share.

    `student_source` replaces the recipe's student model (e.g. the trained run/student).
    With `cross_tokenizer.method` set the two may have different vocabularies, and the
    width is the student's own.
    """
    student_spec = recipe.student.model_dump()
    if student_source is not None and student_source != recipe.student.model:
        # a trained student was saved with its layers already selected
        student_spec.update(model=student_source, layers=None)
    student = load_model(role="student", device=device, seed=recipe.seed, **student_spec)
    if not need_teacher:
        return None, student, output_vocab_size(student.model)
    teacher = load_model(role="teacher", device=device, seed=recipe.seed,
                         **recipe.teacher.model_dump(exclude={"api"}))
    if recipe.cross_tokenizer.method != "off":
        return teacher, student, output_vocab_size(student.model)
    return teacher, student, shared_vocab_size(teacher, student)


def load_splits(data: DataSection, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Training and held-out pairs: `data.eval` if given, else a seeded split of `data.train`."""
    pairs = load_pairs(data.train, data.prompt_field, data.response_field)
    if data.eval:
        return pairs, load_pairs(data.eval, data.prompt_field, data.response_field)
    return split_pairs(pairs, data.eval_fraction, seed)
