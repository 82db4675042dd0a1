"""Tokens/s, peak memory and model-FLOPs utilisation of whole training steps.

    python benchmarks/bench_step.py --device cuda            # Qwen2-shaped 1.5B -> 0.5B, 8 x 1024
    python benchmarks/bench_step.py --tiny                   # tiny models on CPU (the CI smoke run)

Teacher and student are built from Qwen2 configs with random weights (nothing is downloaded):
teacher 1.5B (hidden 1536, 28 layers), student 0.5B (hidden 896, 24 layers), V = 151936,
tied embeddings. The teacher is bf16 on a GPU; the student keeps float32 weights and runs
under bf16 autocast, as `train.mixed_precision: auto` does. Each step: forward, backward,
gradient clipping at 1.0 and an AdamW step (fused on CUDA), as the trainer runs it.

Variants, in one process on the same batch:
- finetune        the student alone, Hugging Face's own loss (full logits, cross-entropy);
- live            distil's step: teacher forward under inference_mode, the fused
                  generalized JSD (one pass, `reduction="sum"`) from both heads;
- store           the teacher's stored top-k (k = 32, already on the device, as the store
                  reader hands it over) and the fused sparse generalized JSD;
- live-compile, store-compile   the same with the student's forward torch.compile'd.

Model FLOPs per token, the convention of issue 15: 6 * P_student (forward and backward) plus
2 * P_teacher for a live teacher's forward, P = parameter count with a tied head counted
once (its matmul), attention scores not counted (at 1024 tokens they would add about 7%).
MFU = model FLOPs per token * tokens/s / the device's peak dense bf16 FLOP/s (989.4e12 for
an H100/H200 SXM; `--peak-tflops` for any other).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

SHAPES = {
    "qwen2-1.5b": {
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
    },
    "qwen2-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
    },
    "tiny-teacher": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "tiny-student": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
VARIANTS = ("finetune", "live", "store", "live-compile", "store-compile")
TOP_K = 32


def build(shape: str, vocab: int, device: str, dtype: torch.dtype, seed: int):
    """A Qwen2 causal LM of one of the SHAPES with random weights, on `device`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=True, **SHAPES[shape]
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    return model.to(dtype)


def parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied head counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def batch(args) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def _inputs(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch's model inputs, as distil.train.batch.Batch.model_inputs gives them."""
    return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}


class Bench:
    """The models, optimizer and inputs every variant shares."""

    def __init__(self, args) -> None:
        from distil.train.step import make_optimizer, response_index

        self.args, self.cuda = args, args.device == "cuda"
        teacher_dtype = torch.bfloat16 if self.cuda else torch.float32
        self.teacher = build(args.teacher, args.vocab, args.device, teacher_dtype, 1).eval()
        self.teacher.requires_grad_(False)
        self.student = build(args.student, args.vocab, args.device, torch.float32, 2).train()
        self.optimizer = make_optimizer(self.student.parameters(), 1e-5, 0.0, torch.device(args.device))
        cpu_batch = batch(args)
        self.index = response_index(cpu_batch).to(args.device)
        self.batch = {k: v.to(args.device) for k, v in cpu_batch.items()}
        self.targets = self.batch["labels"].flatten()[self.index + 1]
        self.top_k = self._stored_top_k()
        self.compiled = None

    def _stored_top_k(self):
        from distil.losses import teacher_top_k
        from distil.train.session import model_outputs
        from distil.train.step import response_rows, teacher_mode

        with teacher_mode():
            logits = model_outputs(self.teacher, _inputs(self.batch), hidden=False)
        rows = response_rows(logits, self.index)
        return teacher_top_k(rows.float(), TOP_K)

    def autocast(self):
        return torch.autocast("cuda", torch.bfloat16) if self.cuda else torch.autocast("cpu", enabled=False)

    def loss(self, variant: str) -> torch.Tensor:
        from distil.losses import Objective, fused_linear_loss, sparse_objective_per_token
        from distil.models import linear_head_weight
        from distil.train.session import model_outputs
        from distil.train.step import autocast_head, response_rows, teacher_mode

        b, student = self.batch, self.student
        if variant == "finetune":
            with self.autocast():
                return student(
                    input_ids=b["input_ids"],
                    attention_mask=b["attention_mask"],
                    labels=b["labels"],
                    use_cache=False,
                ).loss
        forward = self.compiled if variant.endswith("-compile") else student.model
        with self.autocast():
            hidden = forward(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False
            ).last_hidden_state
        hidden = response_rows(hidden, self.index)
        head_dtype = torch.bfloat16 if self.cuda else None
        student_hidden = autocast_head(hidden, head_dtype)
        weight = autocast_head(linear_head_weight(student), head_dtype)
        objective = Objective("generalized_jsd", beta=0.5)
        n = self.index.numel()
        if variant.startswith("live"):
            with teacher_mode():
                teacher_all = model_outputs(self.teacher, _inputs(b), hidden=True)
            teacher_hidden = response_rows(teacher_all, self.index)

            def per_token(s, t, rows):
                return objective.per_token(s, t, None)

            return (
                fused_linear_loss(
                    student_hidden,
                    weight,
                    teacher_hidden,
                    linear_head_weight(self.teacher),
                    per_token,
                    reduction="sum",
                )
                / n
            )
        top_k, targets = self.top_k, self.targets

        def per_token(s, t, rows):
            return sparse_objective_per_token(objective, s, top_k.rows(rows), targets[rows])

        return fused_linear_loss(student_hidden, weight, None, None, per_token, reduction="sum") / n

    def step(self, variant: str) -> None:
        loss = self.loss(variant)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def measure(self, variant: str) -> dict:
        if variant.endswith("-compile") and self.compiled is None:
            self.compiled = torch.compile(self.student.model)
        sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        started = time.perf_counter()
        for _ in range(self.args.warmup + (2 if variant.endswith("-compile") else 0)):
            self.step(variant)
        sync()
        warm_s = time.perf_counter() - started
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(self.args.steps):
            sync()
            start = time.perf_counter()
            self.step(variant)
            sync()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        tokens = self.args.batch * self.args.seq
        flops = 6 * parameters(self.student) * tokens
        if variant.startswith("live"):
            flops += 2 * parameters(self.teacher) * tokens
        peak = self.args.peak_tflops * 1e12 if self.args.peak_tflops else _device_peak()
        return {
            "variant": variant,
            "seconds": seconds,
            "all_seconds": times,
            "warmup_s": warm_s,
            "tokens_per_s": tokens / seconds,
            "model_tflops_per_s": flops / seconds / 1e12,
            "mfu": flops / seconds / peak if peak else None,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None,
        }


def _device_peak() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((flops for key, flops in PEAK_BF16.items() if key in name), None)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    parser.add_argument("--tiny", action="store_true", help="tiny models, V=300, 2 x 16 tokens (a smoke run)")
    parser.add_argument("--teacher", default="qwen2-1.5b", choices=sorted(SHAPES))
    parser.add_argument("--student", default="qwen2-0.5b", choices=sorted(SHAPES))
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak dense bf16 TFLOP/s, for MFU on unknown devices",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.teacher, args.student, args.vocab, args.batch, args.seq = (
            "tiny-teacher",
            "tiny-student",
            300,
            2,
            16,
        )
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the chosen variants; print the table; return one result per variant."""
    args = parse(argv)
    variants = args.variants.split(",")
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    bench = Bench(args)
    print_header(args, bench)
    results = []
    for variant in variants:  # each row printed and saved as soon as it is measured
        try:
            results.append(bench.measure(variant))
        except Exception as error:  # one failing variant must not hide the others' figures
            results.append({"variant": variant, "failed": f"{type(error).__name__}: {error}"[:300]})
        print_row(results[-1])
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return results


def print_header(args, bench: Bench) -> None:
    device = torch.cuda.get_device_name() if bench.cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"teacher {args.teacher} ({parameters(bench.teacher) / 1e6:.1f}M), student "
        f"{args.student} ({parameters(bench.student) / 1e6:.1f}M), V={args.vocab}, "
        f"{args.batch} x {args.seq} tokens on {device}, torch {torch.__version__}"
    )
    print(f"{'variant':15} {'step ms':>9} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9}")


def print_row(r: dict) -> None:
    if "failed" in r:
        print(f"{r['variant']:15} failed: {r['failed']}", flush=True)
        return
    mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
    peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "n/a"
    print(
        f"{r['variant']:15} {r['seconds'] * 1e3:9.1f} {r['tokens_per_s']:10,.0f} "
        f"{r['model_tflops_per_s']:8.1f} {mfu:>6} {peak:>9}",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
