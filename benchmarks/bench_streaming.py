"""Peak memory of training on a large JSONL file against a small one, streamed (data.streaming).

    python benchmarks/bench_streaming.py                        # 2 GiB against 1 MiB, streamed
    python benchmarks/bench_streaming.py --large-mb 64 --cases streamed,in-memory  # both ways
    python benchmarks/bench_streaming.py --json results.json

Writes the two files (prompt/response rows of about 330 bytes, every row different) into a
scratch folder (`--dir`; removed afterwards unless given), then measures each in its own
process, its peak resident memory read from the kernel (`wait4`):

- `streamed`: `distil train` on the file, tiny built-in teacher and student, `--steps` steps.
- `full-pass`: one streamed reading pass over every row of the file (what a `train.epochs`
  run counts first, and what each epoch reads): JSON parsed, rows turned into pairs, the
  held-out split applied, with its progress bar.
- `in-memory` (asked for with `--cases`): `train` again with data.streaming off (the whole
  file read and tokenised first).

Each result gives the file's size, the peak RSS, the wall time and when the first progress
line about the data appeared. The issue's bar: the large file's peak within 1.5 GiB of the
small one's. The machine's load average is printed beside; memory does not move with it.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# fmt: off
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey", "xray"]
# fmt: on


def write_rows(path: Path, megabytes: float) -> int:
    """A JSONL file of about `megabytes` MiB of distinct prompt/response rows; its rows."""
    draws = random.Random(0)
    phrases = [" ".join(draws.choices(WORDS, k=24)) for _ in range(997)]
    target, written, rows = int(megabytes * 2**20), 0, 0
    with path.open("w", encoding="utf-8") as f:
        while written < target:
            lines = []
            for i in range(rows, rows + 100):
                prompt = f"Item {i}: repeat the words {phrases[i % 997]}"
                lines.append(json.dumps({"prompt": prompt, "response": phrases[(i * 7) % 997]}))
            block = "\n".join(lines) + "\n"
            f.write(block)
            written += len(block)
            rows += 100
    return rows


def recipe_file(folder: Path, data: Path, streaming: bool, steps: int) -> Path:
    raw = {
        "name": "bench-streaming",
        "output_dir": str(folder / f"run-{data.stem}-{streaming}"),
        "teacher": {"model": "tiny-teacher"},
        "student": {"model": "tiny-student"},
        "data": {
            "train": str(data),
            "streaming": streaming,
            "max_length": 64,
            "eval_fraction": 0.01,
            "shuffle_buffer": 1000,
        },
        "train": {"max_steps": steps, "batch_size": 8, "save_every": steps, "log_every": steps},
    }
    path = folder / f"recipe-{data.stem}-{streaming}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


CASES = {"streamed": "train, streamed", "full-pass": "full pass", "in-memory": "train, in memory"}
"""The cases by their --cases names."""

FULL_PASS = """
import sys, time
from distil.recipe import load_recipe
from distil.streaming import RowStream
recipe = load_recipe(sys.argv[1])
print("rows", RowStream(recipe.data, recipe.seed).count(), flush=True)
"""


def measure(command: list[str]) -> dict:
    """Run `command`; its peak RSS (MiB), wall time and the time of its first data line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    first_data, output = None, []
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line)
        if first_data is None and line.startswith("data:"):
            first_data = round(time.perf_counter() - started, 1)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{''.join(output[-20:])}")
    return {
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "seconds": round(seconds, 1),
        "first_data_line_s": first_data,
    }


def run_case(folder: Path, data: Path, what: str, steps: int) -> dict:
    streaming = what != "train, in memory"
    recipe = recipe_file(folder, data, streaming, steps)
    if what == "full pass":
        command = [sys.executable, "-c", FULL_PASS, str(recipe)]
    else:
        command = [sys.executable, "-m", "distil.cli", "train", str(recipe)]
    result = {
        "file": data.name,
        "file_mib": round(data.stat().st_size / 2**20, 1),
        "case": what,
        **measure(command),
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mb", type=float, default=2048)
    parser.add_argument("--small-mb", type=float, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--cases",
        default="streamed,full-pass",
        help=f"comma-separated, of {', '.join(CASES)} (in-memory needs several "
        "times the large file's size in memory)",
    )
    parser.add_argument("--dir", type=Path, help="scratch folder (kept); default a temporary one")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    cases = [CASES[name] for name in args.cases.split(",")]
    results = []
    try:
        for name, size in (("small", args.small_mb), ("large", args.large_mb)):
            data = folder / f"{name}.jsonl"
            rows = write_rows(data, size)
            print(f"{data.name}: {rows:,} rows, {data.stat().st_size / 2**20:,.1f} MiB", flush=True)
            results += [{**run_case(folder, data, case, args.steps), "rows": rows} for case in cases]
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    _summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def _summary(results: list[dict]) -> None:
    for case in dict.fromkeys(r["case"] for r in results):
        small, large = (r for r in results if r["case"] == case)
        grown = (large["peak_rss_mib"] - small["peak_rss_mib"]) / 1024
        print(
            f"{case}: peak RSS {small['peak_rss_mib']:,.0f} MiB on {small['file_mib']:,.0f} "
            f"MiB, {large['peak_rss_mib']:,.0f} MiB on {large['file_mib']:,.0f} MiB "
            f"({grown:+.2f} GiB)",
            flush=True,
        )


if __name__ == "__main__":
    main()
