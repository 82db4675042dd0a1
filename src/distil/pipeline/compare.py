"""`distil run --compare`: the same student trained three ways, for the report.

- logit distillation: the run itself (teacher distributions, the recipe's objective);
- `seq_kd`: sequence-level KD, the teacher's text with hard labels only (kd_weight 0);
- `ground_truth`: the tasks' reference answers to the same prompts, no teacher at all.

Each variant lives in RUN/compare/NAME with its own checkpoints and eval.json; all reuse the
run's cached teacher answers, so the teacher answers the held-out prompts once.
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distil.data import Pair
from distil.evaluate import evaluate
from distil.fsutil import atomic_directory
from distil.loading import load_splits
from distil.progress import console
from distil.recipe import Recipe
from distil.tasks import generate_items
from distil.train import train_or_resume


def variant_recipe(recipe: Recipe, name: str, train_file: Path | None = None) -> Recipe:
    """The run's recipe with a hard-label objective, its own folder and, maybe, other data."""
    data = recipe.data if train_file is None else recipe.data.model_copy(
        update={"train": str(train_file)})
    return recipe.model_copy(update={
        "output_dir": str(recipe.run_dir / "compare" / name),
        "distill": recipe.distill.model_copy(update={"kd_weight": 0.0, "ce_weight": 1.0}),
        "data": data,
        "compare": False,
    })


def ground_truth_pairs(pairs: list[Pair], seed: int) -> list[Pair] | None:
    """The same prompts with the tasks' reference answers; None if they are not task prompts."""
    items = generate_items("train", len(pairs), seed=seed, at_most=True)
    answers = {item.prompt: item.answer for item in items}
    matched = [Pair(p.sample_id, p.prompt, answers[p.prompt]) for p in pairs if p.prompt in answers]
    return matched if len(matched) >= 0.95 * len(pairs) else None


def run_compare(recipe: Recipe) -> None:
    """Train and evaluate the `seq_kd` and `ground_truth` variants of the run's student."""
    cache = recipe.run_dir / "teacher_answers.json"
    variants = [("seq_kd", variant_recipe(recipe, "seq_kd"))]
    truth = _write_ground_truth(recipe)
    if truth is None:
        console.print("[yellow]the training prompts are not task prompts: no ground-truth variant")
    else:
        variants.append(("ground_truth", variant_recipe(recipe, "ground_truth", truth)))
    for name, variant in variants:
        console.rule(f"compare: {name}")
        train_or_resume(variant)
        evaluate(variant, teacher_cache=cache)


def _write_ground_truth(recipe: Recipe) -> Path | None:
    train_pairs, held_out = load_splits(recipe.data, recipe.seed)
    truth = ground_truth_pairs(train_pairs + held_out, recipe.seed)
    if truth is None:
        return None
    folder = recipe.run_dir / "compare" / "ground_truth_data"
    with atomic_directory(folder) as tmp:
        table = pa.Table.from_pylist([{"id": p.sample_id, "prompt": p.prompt, "response": p.response}
                                      for p in truth])
        pq.write_table(table, tmp / "train.parquet")
    return folder / "train.parquet"
