"""Throughput of `distil serve` with and without dynamic batching, through the openai client.

    python benchmarks/bench_serve.py [--model tiny-teacher] [--requests 32] [--max-tokens 16]

Three runs over the same greedy completions requests, each on a fresh in-process server:
one request at a time; all at once with batching off (max batch 1); all at once with
batching on. Prints requests/s, model calls and the mean batch, as a Markdown table.
"""

import argparse
import asyncio
import time

import openai

from distil.server.testing import running_server
from distil.teachers import LocalTeacher


def prompts(count: int) -> list[str]:
    return [f"Reverse the word {'abcdefghij'[: 2 + i % 9]}{i}:" for i in range(count)]


def run_sequential(base_url: str, texts: list[str], max_tokens: int) -> float:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    started = time.perf_counter()
    for text in texts:
        client.completions.create(model="bench", prompt=text, max_tokens=max_tokens, temperature=0)
    return time.perf_counter() - started


def run_concurrent(base_url: str, texts: list[str], max_tokens: int) -> float:
    async def ask_all() -> None:
        async with openai.AsyncOpenAI(
            base_url=base_url, api_key="unused", max_retries=0, timeout=600
        ) as client:
            await asyncio.gather(
                *(
                    client.completions.create(
                        model="bench", prompt=text, max_tokens=max_tokens, temperature=0
                    )
                    for text in texts
                )
            )

    started = time.perf_counter()
    asyncio.run(ask_all())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-teacher")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    teacher = LocalTeacher.load(args.model, device=args.device, batch_size=args.max_batch_size)
    texts = prompts(args.requests)
    runs = [
        ("sequential", run_sequential, args.max_batch_size),
        ("concurrent, batching off", run_concurrent, 1),
        ("concurrent, batching on", run_concurrent, args.max_batch_size),
    ]
    print(
        f"{args.requests} requests, {args.max_tokens} new tokens each, greedy, {args.model} "
        f"on {args.device}\n"
    )
    print("| mode | seconds | requests/s | model calls | mean batch |\n| --- | --- | --- | --- | --- |")
    for name, run, batch_size in runs:
        with running_server(
            teacher, served_name="bench", max_batch_size=batch_size, batch_wait_ms=args.batch_wait_ms
        ) as server:
            run(server.base_url, texts[:1], args.max_tokens)  # warm-up, not timed
            calls_before = server.stats()["batching"]["model_calls"]
            seconds = run(server.base_url, texts, args.max_tokens)
            calls = server.stats()["batching"]["model_calls"] - calls_before
        print(
            f"| {name} | {seconds:.2f} | {args.requests / seconds:.1f} | {calls} | "
            f"{args.requests / calls:.1f} |"
        )


if __name__ == "__main__":
    main()
