"""Seconds per optimizer step of the demo student: logit KD from the store, on-policy (GKD
mixing, lmbda 0.5) and on-policy with the hidden-state term, as `distil run --compare` trains them.

    python benchmarks/bench_onpolicy.py runs/demo     # a finished `distil run` folder

Each method's session is prepared as the comparison prepares it (RUN/compare/data must exist:
run `distil run --compare` once, or at least until its compare stage starts); then 20 steps are
timed after 5 untimed ones. Nothing is written to the run folder.
"""

import sys
import tempfile
import time
from pathlib import Path

from distil.pipeline.compare import CompareData, method_recipe
from distil.recipe import load_recipe
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import prepare_session


def seconds_per_step(recipe, steps: int = 20, warmup: int = 5) -> float:
    session = prepare_session(recipe)
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        accumulate_gradients(session, next_micro_batches(session))
        session.optimizer.step()
        session.optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps


def main(run: Path) -> None:
    recipe = load_recipe(run / "recipe.yaml")
    data = run / "compare" / "data"
    files = CompareData(data / "train.parquet", data / "heldout.parquet", None)
    print("| method | s / step |\n| --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        for method in ("logit_kd", "on_policy", "on_policy_hidden"):
            variant = method_recipe(recipe, method, recipe.seed, files)
            variant = variant.model_copy(update={"output_dir": f"{scratch}/{method}"})
            print(f"| {method} | {seconds_per_step(variant):.3f} |", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
