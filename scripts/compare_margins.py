"""Paired margins between any two methods of a `distil run --compare` folder, and how often
each method's greedy answers loop (docs/real-teacher.md).

    PYTHONPATH=src python scripts/compare_margins.py runs/smollm2-compare-300 on_policy logit_kd

RUN/compare/summary.json holds each method's margin over sequence-level KD only; this prints,
for METHOD − BASE paired by seed, the mean and 95% t-interval of every metric the summary
holds (graded accuracy, held-out KL, perplexity, top-1 agreement). It also prints, per method
and seed, the share of graded answers in which some run of three words occurs twice (a
greedy answer caught in a loop), read from each run's eval_samples.jsonl (the run's own
folder for the compare's own run), with its mean and interval over seeds, and the margin.
Prints one JSON object.
"""

import argparse
import json
from pathlib import Path
from statistics import fmean

from distil.stats import mean_interval

METRICS = ("accuracy", "kl_teacher_student", "perplexity", "top1_agreement")


def repeats_a_run(text: str, words: int = 3) -> bool:
    """Whether some run of `words` consecutive words occurs twice in `text`."""
    tokens = text.split()
    runs = [tuple(tokens[i : i + words]) for i in range(len(tokens) - words + 1)]
    return len(runs) != len(set(runs))


def looping_share(samples: Path) -> float:
    """Share of the graded answers in `samples` (eval_samples.jsonl) that repeat a run."""
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    return fmean(repeats_a_run(row["student"]) for row in rows)


def samples_of(run: Path, method: str, seed: str, own: tuple[str, str]) -> Path:
    """The eval_samples.jsonl of one (method, seed): the run's own for the compare's own run."""
    if (method, seed) == own:
        return run / "eval_samples.jsonl"
    return run / "compare" / method / f"seed-{seed}" / "eval_samples.jsonl"


def interval(values: list[float]) -> dict[str, float | None]:
    mean, half = mean_interval(values)
    return {"mean": mean, "interval": half, "values": values}


def margins(run: Path, method: str, base: str) -> dict:
    summary = json.loads((run / "compare" / "summary.json").read_text())
    methods = summary["methods"]
    seeds = sorted(set(methods[method]["runs"]) & set(methods[base]["runs"]), key=int)
    own = ("logit_kd", str(summary["base_seed"]))
    out: dict = {"method": method, "base": base, "seeds": seeds, "margins": {}, "looping": {}}
    for metric in METRICS:
        out["margins"][metric] = interval(
            [methods[method]["runs"][s][metric] - methods[base]["runs"][s][metric] for s in seeds]
        )
    shares = {name: [looping_share(samples_of(run, name, s, own)) for s in seeds] for name in methods}
    out["looping"] = {name: interval(values) for name, values in shares.items()}
    out["looping_margin"] = interval([a - b for a, b in zip(shares[method], shares[base], strict=True)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder of `distil run --compare`")
    parser.add_argument("method")
    parser.add_argument("base")
    args = parser.parse_args()
    print(json.dumps(margins(args.run, args.method, args.base), indent=1))


if __name__ == "__main__":
    main()
