"""Training tokens/s with and without packing (train.packing), on the demo recipe by default.

    python benchmarks/bench_packing.py                         # synth + capture into a scratch folder first
    python benchmarks/bench_packing.py --run runs/demo         # reuse a run's data/ and signals/
    python benchmarks/bench_packing.py --recipe R.yaml --steps 2 --rounds 1 --warmup 0   # any recipe

The recipe's training is prepared twice, padded and packed, on the same rows in the same
order (packing changes the layout, not the micro-batches). Both then take optimizer steps
in alternating blocks of `--steps` (`--rounds` times, after `--warmup` untimed steps each),
so a load that changes during the run weighs on both alike. Reported per layout: tokens/s
(the rows' tokens, padding not counted, over the timed steps' wall time), the positions the
model computed per row token (1.0 = no padding), and the first step's loss (the same for
both, up to float rounding). The machine's load average is printed beside: compare the two
layouts' ratio, not the absolute speed.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from distil.recipe import Recipe, load_recipe, teacher_signal
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_gradients
from distil.train.session import TrainingSession, prepare_session

REPO = Path(__file__).resolve().parents[1]


class Layout:
    """One prepared training (padded or packed) and what its timed steps added up to."""

    def __init__(self, recipe: Recipe, packing: bool) -> None:
        self.name = "packed" if packing else "padded"
        train = recipe.train.model_copy(update={"packing": packing})
        self.session: TrainingSession = prepare_session(recipe.model_copy(update={"train": train}))
        self.tokens = self.positions = 0
        self.seconds = 0.0
        self.first_loss: float | None = None

    def steps(self, count: int, timed: bool) -> None:
        session = self.session
        for _ in range(count):
            started = time.perf_counter()
            batches = next_micro_batches(session)
            loss = accumulate_gradients(session, batches)
            session.optimizer.step()
            session.scheduler.step()
            session.optimizer.zero_grad(set_to_none=True)
            if self.first_loss is None:
                self.first_loss = loss
            if timed:
                self.seconds += time.perf_counter() - started
                self.tokens += sum(int(b.positions) for b in batches)
                self.positions += sum(b.input_ids.numel() for b in batches)

    def result(self) -> dict:
        return {
            "layout": self.name,
            "tokens_per_s": round(self.tokens / self.seconds, 1),
            "positions_per_token": round(self.positions / self.tokens, 3),
            "first_step_loss": self.first_loss,
            "timed_tokens": self.tokens,
            "seconds": round(self.seconds, 2),
        }


def prepared_recipe(recipe_file: Path, run: Path | None, scratch: Path) -> Recipe:
    """The recipe over `run` (its data and store read, nothing written: sessions are only
    prepared and stepped), or over `scratch`, where the synth and capture stages make them."""
    from distil.pipeline.run import capture_stage, synth_stage

    recipe = load_recipe(recipe_file, [f"output_dir={run or scratch}"])
    if run is None:
        if recipe.synth is not None:
            synth_stage(recipe)
        if teacher_signal(recipe).own_capture:
            capture_stage(recipe)
    return recipe


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "demo.yaml")
    parser.add_argument(
        "--run", type=Path, default=None, help="a run folder holding the recipe's data/ (and signals/)"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        recipe = prepared_recipe(args.recipe, args.run, Path(folder))
        layouts = [Layout(recipe, packing) for packing in (False, True)]
        for layout in layouts:
            layout.steps(args.warmup, timed=False)
        for _ in range(args.rounds):
            for layout in layouts:
                layout.steps(args.steps, timed=True)
        results = [layout.result() for layout in layouts]
    for row in results:
        row["load_average"] = round(os.getloadavg()[0], 2)
        print(json.dumps(row), flush=True)
    speedup = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(f"packed / padded tokens/s: {speedup:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
