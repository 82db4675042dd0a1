"""The API teacher's throughput against `distil serve`, and its cost over calling the model directly.

    python benchmarks/bench_synth.py [--model tiny-teacher | --size small] [--requests 64]
                                     [--max-tokens 32] [--repeats 3]

For each concurrency (1, 4, 16): the same greedy requests sent by `ApiTeacher` (the openai
SDK, async) to a `distil serve` child process batching up to that many requests, against
the same model generating in this process with `LocalTeacher` in batches of that size.
Reports requests/s, completion tokens/s, the API path's time over the direct one (server,
HTTP and client together), and the client's own cost: its CPU time per request, and that
CPU time as a share of the API run's wall time (the client's overhead; target <= 10%).
Then the whole synth stage (probe, journal fsync per request, filters, Parquet, card) at
concurrency 16 over the same server. Direct and API runs alternate, `--repeats` times;
medians; prints Markdown tables.

`--size small` serves a larger random model (hidden 512, 8 layers, about 27M parameters)
so generation, not HTTP, dominates, as it does with a real teacher.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from distil.models import build_tiny
from distil.server.testing import serve_process
from distil.teachers import LocalTeacher, Sampling
from distil.teachers.api import ApiTeacher

SIZES = {"small": {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8,
                   "num_attention_heads": 8, "num_key_value_heads": 4, "initializer_range": 0.3}}


def prompts(count: int) -> list[str]:
    return [f"Reverse the word: {'abcdefghijklmnop'[: 3 + i % 12]}{i}" for i in range(count)]


def model_folder(size: str, root: Path) -> str:
    model, tokenizer = build_tiny("tiny-teacher", **SIZES[size])
    model.save_pretrained(root / size)
    tokenizer.save_pretrained(root / size)
    return str(root / size)


def time_direct(teacher: LocalTeacher, texts: list[str], sampling: Sampling,
                batch: int) -> tuple[float, int]:
    teacher.batch_size = batch
    started = time.perf_counter()
    done = teacher.generate(texts, sampling)
    return time.perf_counter() - started, sum(c.usage.completion_tokens for c in done)


def time_api(base_url: str, model: str, texts: list[str], sampling: Sampling,
             concurrency: int) -> tuple[float, int, float]:
    with ApiTeacher(model, base_url, api_key_env=None, concurrency=concurrency,
                    timeout_s=600) as client:
        client.generate(texts[:2], sampling)  # connections open, server warm
        cpu, started = time.process_time(), time.perf_counter()
        done = client.generate(texts, sampling)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return wall, sum(c.usage.completion_tokens for c in done), cpu


def time_synth(base_url: str, model: str, texts: list[str], max_tokens: int, root: Path) -> float:
    from distil.recipe import validate_recipe
    from distil.synth.stage import run_synth

    seeds = root / "seeds.txt"
    seeds.write_text("\n".join(texts) + "\n")
    out = Path(tempfile.mkdtemp(dir=root))
    recipe = validate_recipe({
        "name": "bench", "output_dir": str(out),
        "teacher": {"model": model, "api": {"base_url": base_url, "api_key_env": None,
                                            "concurrency": 16}},
        "student": {"model": "tiny-student"}, "distill": {"kd_weight": 0, "ce_weight": 1},
        "synth": {"prompts": {"file": str(seeds)}, "dedup": {"minhash_threshold": None},
                  "sampling": {"max_new_tokens": max_tokens, "temperature": 0},
                  "filters": {"drop_truncated": False, "refusal_patterns": [], "min_chars": 0,
                              "drop_empty": False}}})
    started = time.perf_counter()
    run_synth(recipe)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-teacher")
    parser.add_argument("--size", choices=sorted(SIZES), default=None)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    model = model_folder(args.size, root) if args.size else args.model
    texts = prompts(args.requests)
    sampling = Sampling(max_new_tokens=args.max_tokens)
    teacher = LocalTeacher.load(model, device="cpu")
    print(f"{args.requests} requests, {args.max_tokens} new tokens each, greedy; model "
          f"{args.size or args.model}; medians of {args.repeats}\n")
    print("| concurrency | direct req/s | API req/s | API tokens/s | API / direct | client CPU ms/req "
          "| client CPU / API wall |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for concurrency in (1, 4, 16):
        with serve_process(model, "--max-batch-size", str(concurrency), "--served-name", "bench",
                           "--max-tokens", str(max(args.max_tokens, 64))) as server:
            direct, api = [], []
            for _ in range(args.repeats):  # alternate, so a busy spell hits both
                direct.append(time_direct(teacher, texts, sampling, concurrency))
                api.append(time_api(server.base_url, "bench", texts, sampling, concurrency))
        d_wall = statistics.median(w for w, _ in direct)
        a_wall = statistics.median(w for w, _, _ in api)
        tokens = api[0][1]
        cpu = statistics.median(c for _, _, c in api)
        print(f"| {concurrency} | {args.requests / d_wall:.1f} | {args.requests / a_wall:.1f} | "
              f"{tokens / a_wall:.0f} | {a_wall / d_wall:.2f} | {1000 * cpu / args.requests:.2f} | "
              f"{cpu / a_wall:.1%} |")
    with serve_process(model, "--max-batch-size", "16", "--served-name", "bench") as server:
        synth, api16 = [], []
        for _ in range(args.repeats):
            api16.append(time_api(server.base_url, "bench", texts, sampling, 16)[0])
            synth.append(time_synth(server.base_url, "bench", texts, args.max_tokens, root))
    s_wall, a_wall = statistics.median(synth), statistics.median(api16)
    print("\n| path (concurrency 16) | seconds | req/s | / ApiTeacher.generate |\n| --- | --- | --- | --- |")
    print(f"| ApiTeacher.generate | {a_wall:.2f} | {args.requests / a_wall:.1f} | 1.00 |")
    print(f"| synth stage (journal, filters, Parquet, card) | {s_wall:.2f} | "
          f"{args.requests / s_wall:.1f} | {s_wall / a_wall:.2f} |")


if __name__ == "__main__":
    main()
