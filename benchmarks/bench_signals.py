"""Teacher-signal store: bytes per token, capture tokens/s, training from the store vs a live teacher.

    python benchmarks/bench_signals.py                  # everything, CPU
    python benchmarks/bench_signals.py --parts bytes    # just the storage table

1. bytes: stores captured at k = 1, 8, 32, 128 with float16 and uint8 log-probabilities from a
   teacher whose head has V = 151936 rows (a Qwen2-size vocabulary); bytes are whole shard
   files (headers, index and checksums included) divided by stored tokens.
   quant: the error each log-probability encoding leaves on Zipf-like teacher distributions.
2. capture: `distil capture` tokens/s with the benchmark teacher (k = 32, uint8), model
   loading excluded.
3. train: training tokens/s (optimizer steps, data and store lookups included; prompt and
   response tokens counted, as the trainer does) from the store against a live teacher: same
   student, data, objective and schedule, steps of the two interleaved in one process so that
   a shared machine's load hits both alike. Peak resident memory (VmHWM) of each mode is
   measured in a process of its own.

Benchmark models are random Llamas built from configs over the byte tokenizer: a teacher of
hidden 512 x 12 layers (69M parameters) and a student of hidden 128 x 2 layers (8.6M), both
with V = 32000 output rows: about the 8:1 size ratio of a 7B teacher and a 1B student.
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from distil.models import byte_tokenizer, count_parameters

SHAPES = {
    "teacher": {
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
    },
    "student": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "wide-teacher": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


def save_model(root: Path, name: str, vocab: int, seed: int) -> Path:
    """A random Llama of SHAPES[name] with `vocab` output rows, saved as an HF folder."""
    tokenizer = byte_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        initializer_range=0.1,
        **SHAPES[name],
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(root / name)
    tokenizer.save_pretrained(root / name)
    return root / name


def write_data(path: Path, rows: int, seed: int = 0) -> Path:
    """Prompt/response pairs with responses of 60-120 bytes (tokens, under the byte tokenizer)."""
    rng = random.Random(seed)
    words = ["teacher", "student", "signal", "store", "token", "shard", "logit", "tail", "mass"]
    with path.open("w") as f:
        for i in range(rows):
            response = " ".join(rng.choice(words) for _ in range(rng.randint(9, 16)))
            f.write(
                json.dumps({"id": f"r{i}", "prompt": f"Say something ({i})", "response": response}) + "\n"
            )
    return path


def recipe(root: Path, signals: bool, steps: int) -> dict:
    return {
        "name": "bench",
        "output_dir": str(root / ("run-store" if signals else "run-live")),
        "teacher": {"model": str(root / "teacher")},
        "student": {"model": str(root / "student")},
        "data": {
            "train": str(root / "data.jsonl"),
            "eval_fraction": 0.0,
            "max_length": 192,
            "template": "plain",
        },
        "distill": {"divergence": "forward_kl", "temperature": 1.0},
        "capture": {"top_k": 32, "logprob_dtype": "uint8", "batch_size": 16, "output": str(root / "signals")},
        "signals": {"path": str(root / "signals") if signals else None},
        "train": {"max_steps": steps, "batch_size": 8, "learning_rate": 1e-3, "save_every": 10**6},
    }


def bench_bytes(root: Path, tokens_wanted: int) -> list[dict]:
    """Bytes per token of real shard files at several k and dtypes."""
    from distil.capture.sources import LocalTeacherSource
    from distil.capture.stage import run_capture
    from distil.data import encode_pairs, load_pairs
    from distil.models import load_model
    from distil.signals import build_fingerprint, bytes_per_token

    vocab = 151936
    teacher = load_model(str(save_model(root, "wide-teacher", vocab, seed=3)), "teacher")
    pairs = load_pairs(write_data(root / "bytes.jsonl", max(8, tokens_wanted // 100)))
    examples = encode_pairs(teacher.tokenizer, pairs, "plain", 192)
    rows = []
    for k in (1, 8, 32, 128):
        for dtype in ("float16", "uint8"):
            fingerprint = build_fingerprint(
                {"temperature": 1.0},
                vocab_size=vocab,
                top_k=k,
                logprob_dtype=dtype,
                source="local",
                logprob_mode="teacher-forced",
                provenance={},
            )
            source = LocalTeacherSource(teacher, vocab, k, 1.0, teacher.tokenizer.pad_token_id)
            result = run_capture(
                source,
                examples,
                fingerprint,
                root / f"bytes-{k}-{dtype}",
                batch_size=16,
                shard_tokens=1 << 20,
            )
            rows.append(
                {
                    "k": k,
                    "dtype": dtype,
                    "bytes_per_token": result.bytes_per_token,
                    "record_bytes": bytes_per_token(vocab, k, dtype),
                    "tokens": result.tokens,
                }
            )
    return rows


def bench_quantisation(count: int = 2000, vocab: int = 32000, k: int = 32) -> dict[str, dict]:
    """Error of each encoding (log-probabilities and log tail) on the (k + 1)-bucket distribution
    of Zipf-like teachers (temperatures 0.3 to 1.5), after the reader's renormalisation; plus uniform 8-bit
    log-probabilities over [-16, 0], the rejected alternative to uint8's companding."""
    import numpy as np

    from distil.signals.codec import decode_logprobs, encode_logprobs, normalise

    rng = np.random.default_rng(0)
    logits = -1.1 * np.log(np.arange(1, vocab + 1)) + rng.normal(0, 1.5, (count, vocab))
    logits /= rng.choice([0.3, 0.7, 1.0, 1.5], size=(count, 1))
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    top = -np.sort(-log_p, axis=1)[:, :k]
    tail = np.log1p(-np.exp(top).sum(1))
    truth = np.exp(np.concatenate([top, tail[:, None]], axis=1))

    def uniform_log8(values):
        levels = np.rint((np.maximum(values, -16) + 16) / 16 * 255)
        return np.where(levels == 0, -np.inf, levels / 255 * 16 - 16)

    decoders = {
        name: (lambda v, n=name: decode_logprobs(encode_logprobs(v, n), n)) for name in ("float16", "uint8")
    }
    decoders["uniform log, 8 bits"] = uniform_log8
    results = {}
    for name, roundtrip in decoders.items():
        got_top, got_tail = normalise(
            roundtrip(top.astype(np.float32)).astype(np.float32),
            roundtrip(tail.astype(np.float32)).astype(np.float32),
        )
        got = np.exp(np.concatenate([got_top, got_tail[:, None]], axis=1).astype(np.float64))
        l1 = np.abs(got - truth).sum(axis=1)
        with np.errstate(divide="ignore"):
            kl = np.where(truth > 0, truth * (np.log(truth) - np.log(got)), 0).sum(axis=1)
        results[name] = {
            "l1_mean": l1.mean(),
            "l1_max": l1.max(),
            "kl_mean": kl.mean(),
            "zeroed": float((got[:, :k] == 0).mean()),
        }
    return results


def bench_capture(root: Path) -> dict:
    from distil.capture import capture
    from distil.recipe import validate_recipe

    result = capture(validate_recipe(recipe(root, signals=False, steps=1)))
    return {
        "tokens": result.tokens,
        "seconds": result.elapsed_s,
        "tokens_per_s": result.tokens / result.elapsed_s,
        "bytes_per_token": result.bytes_per_token,
    }


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def _step(session) -> tuple[int, float]:
    """One optimizer step (batches and store lookups included); its tokens and seconds."""
    from distil.train.loop import next_micro_batches
    from distil.train.loss import accumulate_gradients

    started = time.perf_counter()
    batches = next_micro_batches(session)
    accumulate_gradients(session, batches)
    session.optimizer.step()
    session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    return sum(int(b.attention_mask.sum()) for b in batches), time.perf_counter() - started


def bench_train(root: Path, steps: int) -> dict[str, dict]:
    """Both sessions in one process, steps interleaved, so that load on a shared machine hits
    both alike; the same seed gives both the same batches."""
    from distil.recipe import validate_recipe
    from distil.train.session import prepare_session

    sessions = {
        mode: prepare_session(validate_recipe(recipe(root, mode == "store", steps + 2)))
        for mode in ("live", "store")
    }
    totals = {mode: [0, 0.0] for mode in sessions}
    for step in range(steps + 2):
        for mode, session in sessions.items():
            tokens, seconds = _step(session)
            if step >= 2:  # warm-up
                totals[mode][0] += tokens
                totals[mode][1] += seconds
    return {
        mode: {
            "tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "fused": sessions[mode].fused,
            "teacher_loaded": sessions[mode].teacher is not None,
        }
        for mode, (tokens, seconds) in totals.items()
    }


def memory_child(root: Path, mode: str) -> dict:
    """Inside a child process: set up and take two steps; the peak resident memory."""
    from distil.recipe import validate_recipe
    from distil.train.session import prepare_session

    session = prepare_session(validate_recipe(recipe(root, mode == "store", 2)))
    for _ in range(2):
        _step(session)
    return {"peak_rss_mib": _rss_kib("VmHWM") / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="bytes,quant,capture,train")
    parser.add_argument("--rows", type=int, default=400, help="training rows")
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps per mode")
    parser.add_argument("--bytes-tokens", type=int, default=4000)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    if args.child:
        print(json.dumps(memory_child(Path(args.root), args.child)))
        return
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        if "bytes" in parts:
            print("\n| k | logprobs | bytes/token (files) | bytes/token (records) | bytes/entry |")
            print("| --- | --- | --- | --- | --- |")
            for row in bench_bytes(root, args.bytes_tokens):
                print(
                    f"| {row['k']} | {row['dtype']} | {row['bytes_per_token']:.1f} | "
                    f"{row['record_bytes']} | {row['bytes_per_token'] / row['k']:.2f} |"
                )
        if "quant" in parts:
            print("\n| log-probabilities | mean L1 | max L1 | mean KL(true, stored) | entries zeroed |")
            print("| --- | --- | --- | --- | --- |")
            for name, r in bench_quantisation().items():
                print(
                    f"| {name} | {r['l1_mean']:.2e} | {r['l1_max']:.2e} | {r['kl_mean']:.2e} | "
                    f"{r['zeroed']:.1%} |"
                )
        if not {"capture", "train"} & set(parts):
            return
        write_data(root / "data.jsonl", args.rows)
        teacher = save_model(root, "teacher", 32000, seed=1)
        student = save_model(root, "student", 32000, seed=2)
        params = {
            name: count_parameters(LlamaForCausalLM.from_pretrained(path))
            for name, path in (("teacher", teacher), ("student", student))
        }
        print(
            f"\nteacher {params['teacher'] / 1e6:.1f}M params, student "
            f"{params['student'] / 1e6:.1f}M params, V = 32000"
        )
        captured = bench_capture(root)
        print(
            f"capture: {captured['tokens']} tokens in {captured['seconds']:.1f} s = "
            f"{captured['tokens_per_s']:,.0f} tokens/s ({captured['bytes_per_token']:.1f} B/token)"
        )
        if "train" in parts:
            results = bench_train(root, args.steps)
            for mode in results:
                child = subprocess.run(
                    [sys.executable, __file__, "--root", str(root), "--child", mode],
                    capture_output=True,
                    text=True,
                )
                if child.returncode != 0:
                    raise SystemExit(f"{mode} failed:\n{child.stderr[-3000:]}")
                results[mode].update(json.loads(child.stdout.strip().splitlines()[-1]))
            print("\n| teacher | tokens/s | peak RSS (MiB) | fused path | tokens timed |")
            print("| --- | --- | --- | --- | --- |")
            for mode, r in results.items():
                print(
                    f"| {mode} | {r['tokens_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} | "
                    f"{r['fused']} | {r['tokens']} |"
                )
            speedup = results["store"]["tokens_per_s"] / results["live"]["tokens_per_s"]
            print(f"\nstore / live: {speedup:.2f}x tokens/s")


if __name__ == "__main__":
    main()
