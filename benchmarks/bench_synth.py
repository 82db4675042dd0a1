"""The API teacher's throughput against `distil serve`, and its cost over calling the model directly.

    python benchmarks/bench_synth.py [--model tiny-teacher | --size small] [--requests 64]
                                     [--max-tokens 32] [--repeats 3]

For each concurrency (1, 4, 16): the same greedy requests sent by `ApiTeacher` (the openai
SDK, async) to a `distil serve` child process batching up to that many requests, against
the same model generating in this process with `LocalTeacher` in batches of that size.
Reports requests/s, completion tokens/s, and the API path's time over the direct one
(server, HTTP and client together). The client's own overhead is measured apart: the same
requests through `ApiTeacher` to an in-process endpoint that answers at once with a
same-sized reply (an HTTP transport mock, no socket, no model), in ms per request, and as
a share of the direct generation time per request (target <= 10%).
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
from distil.recipe.api import ApiSection
from distil.server.testing import serve_process
from distil.teachers import LocalTeacher, Sampling
from distil.teachers.api import ApiTeacher

SIZES = {
    "small": {
        "hidden_size": 512,
        "intermediate_size": 1376,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "initializer_range": 0.3,
    }
}


def prompts(count: int) -> list[str]:
    return [f"Reverse the word: {'abcdefghijklmnop'[: 3 + i % 12]}{i}" for i in range(count)]


def model_folder(size: str, root: Path) -> str:
    model, tokenizer = build_tiny("tiny-teacher", **SIZES[size])
    model.save_pretrained(root / size)
    tokenizer.save_pretrained(root / size)
    return str(root / size)


def time_direct(teacher: LocalTeacher, texts: list[str], sampling: Sampling, batch: int) -> tuple[float, int]:
    teacher.batch_size = batch
    teacher.generate(texts[:batch], sampling)  # warm: the first generate call is slow
    started = time.perf_counter()
    done = teacher.generate(texts, sampling)
    return time.perf_counter() - started, sum(c.usage.completion_tokens for c in done)


def time_api(
    base_url: str, model: str, texts: list[str], sampling: Sampling, concurrency: int
) -> tuple[float, int]:
    api = ApiSection(base_url=base_url, api_key_env=None, concurrency=concurrency, timeout_s=600)
    with ApiTeacher.from_section(model, api) as client:
        client.generate(texts[:concurrency], sampling)  # connections open, server warm
        started = time.perf_counter()
        done = client.generate(texts, sampling)
        return time.perf_counter() - started, sum(c.usage.completion_tokens for c in done)


def instant_endpoint(max_tokens: int):
    """An HTTP client whose transport answers every chat request at once (no model)."""
    import json

    try:
        import httpx2 as httpx
    except ImportError:
        import httpx

    reply = "x" * max_tokens

    def answer(request):
        body = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "length",
                        "message": {"role": "assistant", "content": reply},
                    }
                ],
                "usage": {
                    "prompt_tokens": 12,
                    "completion_tokens": max_tokens,
                    "total_tokens": 12 + max_tokens,
                },
            },
        )

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


def time_client_alone(texts: list[str], sampling: Sampling, concurrency: int) -> float:
    """Seconds per request the client spends with an endpoint that costs nothing."""
    api = ApiSection(base_url="http://instant.test/v1", api_key_env=None, concurrency=concurrency)
    with ApiTeacher.from_section(
        "bench", api, http_client=instant_endpoint(sampling.max_new_tokens)
    ) as client:
        client.generate(texts[:concurrency], sampling)
        started = time.perf_counter()
        client.generate(texts, sampling)
        return (time.perf_counter() - started) / len(texts)


def time_synth(base_url: str, model: str, texts: list[str], max_tokens: int, root: Path) -> float:
    from distil.recipe import validate_recipe
    from distil.synth.stage import run_synth

    seeds = root / "seeds.txt"
    seeds.write_text("\n".join(texts) + "\n")
    out = Path(tempfile.mkdtemp(dir=root))
    recipe = validate_recipe(
        {
            "name": "bench",
            "output_dir": str(out),
            "teacher": {
                "model": model,
                "api": {"base_url": base_url, "api_key_env": None, "concurrency": 16},
            },
            "student": {"model": "tiny-student"},
            "distill": {"kd_weight": 0, "ce_weight": 1},
            "synth": {
                "prompts": {"file": str(seeds)},
                "dedup": {"minhash_threshold": None},
                "sampling": {"max_new_tokens": max_tokens, "temperature": 0},
                "filters": {
                    "drop_truncated": False,
                    "refusal_patterns": [],
                    "min_chars": 0,
                    "drop_empty": False,
                },
            },
        }
    )
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
    print(
        f"{args.requests} requests, {args.max_tokens} new tokens each, greedy; model "
        f"{args.size or args.model}; medians of {args.repeats}\n"
    )
    print(
        "| concurrency | direct req/s | API req/s | API tokens/s | API / direct "
        "| client alone ms/req | client alone / direct |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for concurrency in (1, 4, 16):
        with serve_process(
            model,
            "--max-batch-size",
            str(concurrency),
            "--served-name",
            "bench",
            "--max-tokens",
            str(max(args.max_tokens, 64)),
        ) as server:
            direct, api, alone = [], [], []
            for _ in range(args.repeats):  # alternate, so a busy spell hits all three
                direct.append(time_direct(teacher, texts, sampling, concurrency))
                api.append(time_api(server.base_url, "bench", texts, sampling, concurrency))
                alone.append(time_client_alone(texts, sampling, concurrency))
        d_wall = statistics.median(w for w, _ in direct)
        a_wall = statistics.median(w for w, _ in api)
        client = statistics.median(alone)
        print(
            f"| {concurrency} | {args.requests / d_wall:.1f} | {args.requests / a_wall:.1f} | "
            f"{api[0][1] / a_wall:.0f} | {a_wall / d_wall:.2f} | {1000 * client:.2f} | "
            f"{client / (d_wall / args.requests):.1%} |"
        )
    with serve_process(model, "--max-batch-size", "16", "--served-name", "bench") as server:
        synth, api16 = [], []
        for _ in range(args.repeats):
            api16.append(time_api(server.base_url, "bench", texts, sampling, 16)[0])
            synth.append(time_synth(server.base_url, "bench", texts, args.max_tokens, root))
    s_wall, a_wall = statistics.median(synth), statistics.median(api16)
    print("\n| path (concurrency 16) | seconds | req/s | / ApiTeacher.generate |\n| --- | --- | --- | --- |")
    print(f"| ApiTeacher.generate | {a_wall:.2f} | {args.requests / a_wall:.1f} | 1.00 |")
    print(
        f"| synth stage (journal, filters, Parquet, card) | {s_wall:.2f} | "
        f"{args.requests / s_wall:.1f} | {s_wall / a_wall:.2f} |"
    )


if __name__ == "__main__":
    main()
