"""`distil run --compare`: the same student trained by several methods, over several seeds.

Methods (recipe `comparison.methods`), all on the run's training prompts for the run's steps:

- `ground_truth`: the tasks' reference answers to those prompts, hard labels, no teacher;
- `seq_kd`: sequence-level KD, the teacher's text with hard labels only (kd_weight 0);
- `logit_kd`: the recipe's own objective (at the recipe's seed: the run itself);
- `logit_kd_ce`: that objective plus cross-entropy on the teacher's text (ce_weight 1 unless
  the recipe sets one), from the run's store when it has one;
- `logit_kd_hidden`: that objective plus a hidden-state term, from the live teacher;
- `on_policy`: that objective with GKD's mixing (distill.on_policy, lmbda 0.5 by default):
  some micro-batches are the student's own samples, scored by the live teacher;
- `on_policy_hidden`: on_policy plus a hidden-state term, from the live teacher.

Each (method, seed) trains in RUN/compare/METHOD/seed-S with its own checkpoints. The data
(RUN/compare/data), the signal store and the held-out prompts are the run's for every seed,
so the teacher's synth and capture run once and its held-out answers are cached once; the
seed moves batch order, sampling and initialisation. RUN/compare/summary.json holds every
run's figures and, per method and metric (held-out task accuracy, KL to the teacher, the
student's perplexity, top-1 agreement), the mean with a 95% t-interval over seeds and the
paired margin over sequence-level KD.

Data efficiency (`comparison.fractions`, `comparison.fraction_methods`): the same methods
and seeds again on a share of the training prompts, for the run's steps, in
RUN/compare/fraction-F/METHOD/seed-S. Each share is one subset chosen with the recipe's
seed (so methods are paired, and a smaller share lies inside a larger one); ground truth
trains on the reference answers of the same prompts, logit KD on the run's store. The
summary's `data_efficiency` holds each share's figures, the whole set's (key "1.0") being
the main comparison's.
"""

import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distil.data import Pair
from distil.evaluate import evaluate
from distil.fsutil import atomic_directory, atomic_write_json
from distil.loading import load_splits
from distil.progress import console
from distil.recipe import Recipe
from distil.signals.recipe import training_store_dir
from distil.stats import mean_interval
from distil.tasks import generate_items, task_names
from distil.train import run_training

DEFAULT_ON_POLICY = {"lmbda": 0.5, "temperature": 1.0}
"""GKD's mixing when the recipe sets none: half the micro-batches on-policy, sampled at T=1."""
DEFAULT_HIDDEN = {"weight": 1.0, "loss": "cosine"}
"""The hidden-state term of the `*_hidden` methods when the recipe sets none (uniform map)."""


@dataclass(frozen=True)
class CompareData:
    """The files every variant trains and is evaluated on."""

    train: Path
    heldout: Path
    ground_truth: Path | None


def ground_truth_pairs(pairs: list[Pair], seed: int) -> list[Pair] | None:
    """The same prompts with the tasks' reference answers; None if they are not task prompts."""
    items = generate_items(
        "train", len(pairs), seed=seed, at_most=True, tasks=task_names(include_opt_in=True)
    )
    answers = {item.prompt: item.answer for item in items}
    matched = [Pair(p.sample_id, p.prompt, answers[p.prompt]) for p in pairs if p.prompt in answers]
    return matched if len(matched) >= 0.95 * len(pairs) else None


def training_subset(pairs: list[Pair], fraction: float, seed: int) -> list[Pair]:
    """The first `fraction` of a `seed`ed shuffle of `pairs` (at least one), in their own
    order: the same for every method and seed, and each smaller share inside a larger one."""
    order = random.Random(seed).sample(range(len(pairs)), len(pairs))
    chosen = set(order[: max(1, round(fraction * len(pairs)))])
    return [pair for index, pair in enumerate(pairs) if index in chosen]


def run_steps(recipe: Recipe) -> int:
    """The run's optimizer steps: train.max_steps, or what its epochs came to."""
    if recipe.train.max_steps:
        return recipe.train.max_steps
    return json.loads((recipe.run_dir / "train_summary.json").read_text())["steps"]


def method_recipe(
    recipe: Recipe, method: str, seed: int, files: CompareData, fraction: float = 1.0
) -> Recipe:
    """The run's recipe trained by `method` at `seed`, in RUN/compare/METHOD/seed-S; on a
    `fraction` of the prompts (`files` hold that subset), in RUN/compare/fraction-F/METHOD/
    seed-S for the run's steps (fewer prompts, more epochs)."""
    d = recipe.distill
    distill = d.model_copy(
        update={
            "hidden": d.hidden.model_copy(update={"weight": 0.0}),
            "on_policy": d.on_policy.model_copy(update={"lmbda": 0.0}),
        }
    )
    train_file, signals = files.train, recipe.signals
    store = training_store_dir(recipe)
    if store is not None:  # the run's store, wherever the variant's folder is
        signals = signals.model_copy(update={"path": str(store.resolve())})
    if method in ("ground_truth", "seq_kd"):
        distill = distill.model_copy(update={"kd_weight": 0.0, "ce_weight": 1.0})
        train_file = files.ground_truth if method == "ground_truth" else files.train
    if method == "logit_kd_ce":
        distill = distill.model_copy(update={"ce_weight": d.ce_weight or 1.0})
    if method in ("on_policy", "on_policy_hidden"):
        chosen = (
            d.on_policy
            if d.on_policy.lmbda > 0
            else d.on_policy.model_copy(
                update={**DEFAULT_ON_POLICY, "max_new_tokens": recipe.eval.max_new_tokens}
            )
        )
        distill = distill.model_copy(update={"on_policy": chosen})
    if method in ("logit_kd_hidden", "on_policy_hidden"):
        hidden = d.hidden if d.hidden.weight > 0 else d.hidden.model_copy(update=DEFAULT_HIDDEN)
        distill = distill.model_copy(update={"hidden": hidden})
        signals = signals.model_copy(update={"path": None})  # a store holds no hidden states
    folder = recipe.run_dir / "compare" / ("" if fraction == 1 else f"fraction-{fraction}")
    train = (
        recipe.train if fraction == 1 else recipe.train.model_copy(update={"max_steps": run_steps(recipe)})
    )
    return recipe.model_copy(
        update={
            "output_dir": str(folder / method / f"seed-{seed}"),
            "seed": seed,
            "train": train,
            "distill": distill,
            "signals": signals,
            "data": recipe.data.model_copy(update={"train": str(train_file), "eval": str(files.heldout)}),
            "compare": False,
        }
    )


def run_compare(recipe: Recipe) -> dict[str, Any]:
    """Train and evaluate every method at every seed; write and return RUN/compare/summary.json."""
    started = time.perf_counter()
    files = _write_data(recipe)
    methods = [
        m for m in recipe.comparison.methods if m != "ground_truth" or files[1.0].ground_truth is not None
    ]
    if len(methods) < len(recipe.comparison.methods):
        console.print("[yellow]the training prompts are not task prompts: no ground-truth variant")
    seeds = [recipe.seed + i for i in range(recipe.comparison.seeds)]
    runs = {m: {str(s): _run_one(recipe, m, s, files[1.0]) for s in seeds} for m in methods}
    summary = summarise(runs, _teacher_accuracy(recipe))
    summary.update(_data_efficiency(recipe, files, seeds, runs))
    summary.update(
        {"seeds": seeds, "base_seed": recipe.seed, "wall_s": round(time.perf_counter() - started, 1)}
    )
    atomic_write_json(recipe.run_dir / "compare" / "summary.json", summary)
    return summary


def _data_efficiency(
    recipe: Recipe,
    files: dict[float, CompareData],
    seeds: list[int],
    runs: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    """`fraction_methods` at every seed on each of `fractions`: per share ("0.1", ..., and
    "1.0" from the main comparison's `runs`) each method's mean, interval, runs and margin
    over seq_kd; and the prompts each share holds. Empty when there is nothing to train."""
    methods = [m for m in recipe.comparison.fraction_methods if m in runs]
    if not methods or not recipe.comparison.fractions:
        return {}
    by_share = {
        str(f): {m: {str(s): _run_one(recipe, m, s, files[f], f) for s in seeds} for m in methods}
        for f in recipe.comparison.fractions
    }
    by_share["1.0"] = {m: runs[m] for m in methods}
    prompts = {str(f): pq.read_metadata(data.train).num_rows for f, data in files.items()}
    return {"data_efficiency": share_points(by_share), "fraction_prompts": prompts}


def share_points(by_share: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> dict[str, Any]:
    """Per share of the prompts, per method: mean accuracy, its 95% interval over seeds, the
    runs and the paired margin over seq_kd (see summarise). `by_share`: share -> method ->
    seed -> _scores."""
    points = {}
    for share, runs in by_share.items():
        points[share] = {
            method: {
                "mean": (entry["accuracy"] or {}).get("mean"),
                "interval": (entry["accuracy"] or {}).get("interval"),
                "runs": entry["runs"],
                "margin_over_seq_kd": (entry["accuracy"] or {}).get("margin_over_seq_kd"),
            }
            for method, entry in summarise(runs, None)["methods"].items()
        }
    return points


def _run_one(
    recipe: Recipe, method: str, seed: int, files: CompareData, fraction: float = 1.0
) -> dict[str, Any]:
    """Accuracies (overall and per task) and seconds of one (method, seed, fraction)."""
    if fraction == 1 and method == "logit_kd" and seed == recipe.seed:  # the run itself
        metrics = json.loads((recipe.run_dir / "eval.json").read_text())
        spent = json.loads((recipe.run_dir / "train_summary.json").read_text())["elapsed_s"]
        stages = {
            name: json.loads(marker.read_text())
            for name in ("train", "eval")
            if (marker := recipe.run_dir / "stages" / f"{name}.json").is_file()
        }
        spent += stages.get("eval", {}).get("seconds", 0.0)
        cpu = sum(stage.get("cpu_seconds", 0.0) for stage in stages.values()) or None
        return _scores(metrics, spent, cpu)
    share = "" if fraction == 1 else f", {fraction:.0%} of the training prompts"
    console.rule(f"compare: {method}, seed {seed}{share}")
    variant = method_recipe(recipe, method, seed, files, fraction)
    cpu_started = time.process_time()
    trained = run_training(variant, resume=True)
    assert trained is not None  # trained in this process
    started = time.perf_counter()
    # the run's seed for evaluation: every variant answers the same held-out prompts; the
    # untrained student and the sample answers are the run's own eval's, not each variant's
    judged = variant.eval.model_copy(update={"baseline": False, "sample_answers": 0})
    metrics = evaluate(
        variant.model_copy(update={"seed": recipe.seed, "eval": judged}),
        teacher_cache=recipe.run_dir / "teacher_answers.json",
    )
    # training's own clock (kept across resumes) + this evaluation
    return _scores(
        metrics, trained.elapsed_s + time.perf_counter() - started, time.process_time() - cpu_started
    )


METRICS = ("accuracy", "kl_teacher_student", "perplexity", "top1_agreement")
"""What each (method, seed) is summarised by: held-out task accuracy (None when the recipe
evaluates no task family), and KL(teacher || student), the student's perplexity and top-1
agreement, teacher-forced on the held-out rows."""


def _scores(metrics: dict[str, Any], seconds: float, cpu_seconds: float | None) -> dict[str, Any]:
    """One run's figures; `seconds` of wall clock and `cpu_seconds` of this process's CPU
    time (every thread; None when not measured) that its training and evaluation took."""
    student = metrics.get("student", {})
    return {
        "accuracy": student.get("accuracy"),
        "per_task": student.get("accuracy_per_task", {}),
        "kl_teacher_student": metrics.get("kl_teacher_student"),
        "perplexity": student.get("perplexity"),
        "top1_agreement": metrics.get("top1_agreement"),
        "seconds": round(seconds, 1),
        "cpu_seconds": None if cpu_seconds is None else round(cpu_seconds, 1),
    }


def summarise(runs: dict[str, dict[str, dict[str, Any]]], teacher_accuracy: float | None) -> dict[str, Any]:
    """Per method and metric (METRICS): the mean over seeds, its 95% t-interval and the
    paired margin over seq_kd (same seed); per-task mean accuracy and retention. `runs`:
    method -> seed -> _scores."""
    methods: dict[str, Any] = {}
    for method, by_seed in runs.items():
        baseline = runs.get("seq_kd") if method != "seq_kd" else None
        entry: dict[str, Any] = {"runs": by_seed}
        entry.update({metric: metric_summary(metric, by_seed, baseline) for metric in METRICS})
        if entry["accuracy"] is not None:
            tasks = {t for r in by_seed.values() for t in r.get("per_task", {})}
            entry["per_task_mean"] = {
                t: statistics.fmean(r["per_task"][t] for r in by_seed.values() if t in r.get("per_task", {}))
                for t in sorted(tasks)
            }
            entry["retention"] = entry["accuracy"]["mean"] / teacher_accuracy if teacher_accuracy else None
        methods[method] = entry
    return {"teacher_accuracy": teacher_accuracy, "methods": methods}


def metric_summary(
    metric: str, by_seed: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]] | None
) -> dict[str, Any] | None:
    """{mean, interval, margin_over_seq_kd} of one metric over the seeds, None when no seed
    has it; the margin ({mean, interval} of the per-seed differences, or None) is paired by
    seed against `baseline` (seq_kd's runs)."""
    values = [r[metric] for r in by_seed.values() if r.get(metric) is not None]
    if not values:
        return None
    mean, half = mean_interval(values)
    margins = [
        r[metric] - baseline[s][metric]
        for s, r in by_seed.items()
        if baseline and s in baseline and r.get(metric) is not None and baseline[s].get(metric) is not None
    ]
    margin = None
    if margins:
        margin_mean, margin_half = mean_interval(margins)
        margin = {"mean": margin_mean, "interval": margin_half}
    return {"mean": mean, "interval": half, "margin_over_seq_kd": margin}


def _teacher_accuracy(recipe: Recipe) -> float | None:
    path = recipe.run_dir / "eval.json"
    return json.loads(path.read_text()).get("teacher", {}).get("accuracy") if path.is_file() else None


def _write_data(recipe: Recipe) -> dict[float, CompareData]:
    """The run's training and held-out pairs, and the ground truth, as Parquet files in
    RUN/compare/data: for the whole training set (1.0: train.parquet, ...) and for each
    data-efficiency fraction (train-F.parquet, ground_truth-F.parquet)."""
    train_pairs, held_out = load_splits(recipe.data, recipe.seed)
    truth = ground_truth_pairs(train_pairs, recipe.seed)
    folder = recipe.run_dir / "compare" / "data"
    fractions = recipe.comparison.fractions if recipe.comparison.fraction_methods else []
    tables: dict[str, list[Pair]] = {"heldout": held_out}
    files = {}
    for fraction in [1.0, *fractions]:
        pairs = train_pairs if fraction == 1 else training_subset(train_pairs, fraction, recipe.seed)
        suffix = "" if fraction == 1 else f"-{fraction}"
        tables[f"train{suffix}"] = pairs
        if truth is not None:
            kept = {p.sample_id for p in pairs}
            tables[f"ground_truth{suffix}"] = [p for p in truth if p.sample_id in kept]
        files[fraction] = CompareData(
            folder / f"train{suffix}.parquet",
            folder / "heldout.parquet",
            folder / f"ground_truth{suffix}.parquet" if truth is not None else None,
        )
    with atomic_directory(folder) as tmp:
        for name, pairs in tables.items():
            pq.write_table(pa.Table.from_pylist([_row(p) for p in pairs]), tmp / f"{name}.parquet")
    return files


def _row(pair: Pair) -> dict[str, str]:
    """A pair as a row; a response the teacher did not finish stays marked so (finish_reason
    `length`), or every variant would learn an end-of-turn token the run and its store have
    not (a store then refuses the row: one token more than it holds)."""
    return {
        "id": pair.sample_id,
        "prompt": pair.prompt,
        "response": pair.response,
        "finish_reason": "length" if pair.truncated else "stop",
    }
