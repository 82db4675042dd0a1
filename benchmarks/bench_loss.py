"""Time and peak extra memory of distillation losses from hidden states (forward + backward).

    python benchmarks/bench_loss.py                                  # CPU, N=1024, V=151936
    python benchmarks/bench_loss.py --device cuda --dtype bf16 --tokens 16384 \
        --student-hidden 896 --teacher-hidden 1536                   # the GPU shapes of issue 15

Paths, all in one process on the same inputs (generalized JSD, beta 0.5, token mean):
- dense          logits = hidden @ weight.T in full, then `distil.losses.generalized_jsd`;
- fused          `distil.losses.fused_linear_divergence(reduction="sum")`, eager chunks;
- fused-compile  the same with the per-chunk divergence torch.compile'd (default on CUDA);
- liger          `liger_kernel.chunked_loss.LigerFusedLinearJSDLoss`, when `liger-kernel` is
                 installed (soft loss only: weight_hard_loss 0, weight_soft_loss 1);
- trl            `trl.trainer.distillation_trainer._chunked_divergence_loss` (the loss of TRL's
                 DistillationTrainer), when `trl` is installed.
A path whose package is missing is reported as skipped. `--chunk-sizes 0,256` runs the fused
path once per chunk size (0: distil's default for the device), fused-compile at the first.

Extra memory is the peak during one forward+backward minus what was held before it (inputs
and weights), so the student's gradients, which every path must produce, are counted. GPU
peaks come from torch.cuda.max_memory_allocated (reset before each path); CPU peaks from the
kernel's high-water mark of resident memory (VmHWM, reset through /proc/self/clear_refs).
Each path's loss is printed too: they must agree. "cpu ms" is the process's CPU time per
step (all threads): on a loaded CPU, with --threads 1, a steadier figure than the wall time.
"""

import argparse
import ctypes
import inspect
import json
import statistics
import sys
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class Memory:
    """Peak memory of a block beyond what was held when it started, on CPU or CUDA."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # earlier paths' freed heap leaves RSS
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.before = _rss_kib("VmRSS") * 1024

    def extra(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.before
        return _rss_kib("VmHWM") * 1024 - self.before


def make_inputs(args) -> list[torch.Tensor]:
    """Student hidden (N, Hs) and weight (V, Hs) with gradients, teacher hidden and weight."""
    dtype = DTYPES[args.dtype]
    g = torch.Generator(device=args.device).manual_seed(0)
    shapes = [
        (args.tokens, args.student_hidden),
        (args.vocab, args.student_hidden),
        (args.tokens, args.teacher_hidden),
        (args.vocab, args.teacher_hidden),
    ]
    tensors = [(torch.randn(*s, generator=g, device=args.device) * args.scale).to(dtype) for s in shapes]
    tensors[0].requires_grad_()
    tensors[1].requires_grad_()
    return tensors


def step_function(path: str, args, chunk_size: int | None):
    """(hs, ws, ht, wt) -> scalar loss (token mean), for one path; ImportError if its package is missing."""
    from distil import losses

    n = args.tokens
    if path == "dense":

        def step(hs, ws, ht, wt):
            with torch.no_grad():
                teacher_logits = ht @ wt.T
            return losses.generalized_jsd(hs @ ws.T, teacher_logits, beta=0.5).mean()

        return step
    if path in ("fused", "fused-compile"):
        weights = torch.full((n,), 1 / n, device=args.device)

        def step(hs, ws, ht, wt):
            return losses.fused_linear_divergence(
                hs,
                ws,
                ht,
                wt,
                divergence="generalized_jsd",
                beta=0.5,
                chunk_size=chunk_size,
                reduction="sum",
                token_weights=weights,
                compile=path == "fused-compile",
            )

        return step
    if path == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

        offered = {
            "beta": 0.5,
            "temperature": 1.0,
            "weight_hard_loss": 0.0,
            "weight_soft_loss": 1.0,
            "compiled": args.device == "cuda",
        }
        accepted = inspect.signature(LigerFusedLinearJSDLoss.__init__).parameters
        loss_fn = LigerFusedLinearJSDLoss(**{k: v for k, v in offered.items() if k in accepted})
        labels = torch.zeros(n, dtype=torch.long, device=args.device)
        takes_labels = "true_labels" in inspect.signature(loss_fn.forward).parameters

        def step(hs, ws, ht, wt):
            return loss_fn(hs, ws, ht, wt, labels) if takes_labels else loss_fn(hs, ws, ht, wt)

        return step
    if path == "trl":
        from trl.trainer.distillation_trainer import _chunked_divergence_loss

        mask = torch.ones(1, n, dtype=torch.long, device=args.device)
        names = list(inspect.signature(_chunked_divergence_loss).parameters)

        def step(hs, ws, ht, wt):
            by_role = {
                "student_hidden": hs[None],
                "teacher_hidden": ht[None],
                "student_lm_head_weight": ws,
                "teacher_lm_head_weight": wt,
            }
            kwargs = {
                name: value for name in names for role, value in by_role.items() if name.startswith(role)
            }
            kwargs[next(name for name in names if name.endswith("mask"))] = mask
            kwargs["beta"] = 0.5
            if "chunk_size" in names:
                kwargs["chunk_size"] = args.trl_chunk_size
            return _chunked_divergence_loss(**kwargs)[0]

        return step
    raise ValueError(f"unknown path {path!r}")


def measure(path: str, args, inputs, chunk_size: int | None = None) -> dict:
    """One measured step for memory (and warm-up), then `args.repeat` timed ones."""
    step = step_function(path, args, chunk_size)
    cuda, memory = args.device == "cuda", Memory(args.device)

    def run():
        for t in inputs[:2]:
            t.grad = None
        if cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step(*inputs)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu_start, loss

    for _ in range(args.warmup):
        run()
    memory.start()
    *_, loss = run()
    extra = memory.extra()
    runs = [run()[:2] for _ in range(args.repeat)]
    times = [wall for wall, _ in runs]
    return {
        "path": path,
        "chunk_size": chunk_size,
        "loss": float(loss.detach()),
        "extra_bytes": extra,
        "seconds": statistics.median(times),
        "all_seconds": times,
        "cpu_seconds": statistics.median(cpu for _, cpu in runs),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--student-hidden", type=int, default=512)
    parser.add_argument("--teacher-hidden", type=int, default=1024)
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument(
        "--scale", type=float, default=0.05, help="standard deviation of the random hidden states and weights"
    )
    parser.add_argument(
        "--chunk-sizes", default="0", help="comma list of fused chunk sizes; 0 is the device's default"
    )
    parser.add_argument("--trl-chunk-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="unmeasured steps before the memory step (compilation, autotuning)",
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--paths",
        default=None,
        help="comma list of dense, fused, fused-compile, liger, trl; default: all "
        "but fused-compile on CPU (compiling there takes minutes)",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the chosen paths; print the table; return one result (or skip) per path."""
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    default = "dense,fused,fused-compile,liger,trl" if args.device == "cuda" else "dense,fused,liger,trl"
    chunk_sizes = [int(c) or None for c in args.chunk_sizes.split(",")]
    inputs = make_inputs(args)
    print_header(args)
    results = []
    for path in (args.paths or default).split(","):
        sizes = {"fused": chunk_sizes, "fused-compile": chunk_sizes[:1]}.get(path, [None])
        for chunk in sizes:  # fused-compile: the first size only (each size compiles anew)
            try:
                results.append(measure(path, args, inputs, chunk))
            except ImportError as error:
                results.append({"path": path, "skipped": f"not installed ({error.name})"})
            except Exception as error:  # a failing path must not hide the others' figures
                results.append(
                    {"path": path, "chunk_size": chunk, "failed": f"{type(error).__name__}: {error}"[:300]}
                )
            if args.device == "cuda":
                torch.cuda.empty_cache()
            print_row(results[-1])  # printed and saved as soon as measured
            if args.json:
                Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return results


def print_header(args) -> None:
    device = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"N={args.tokens} V={args.vocab} Hs={args.student_hidden} Ht={args.teacher_hidden} "
        f"{args.dtype} on {device}, torch {torch.__version__}, generalized_jsd(0.5), fwd+bwd"
    )
    print(f"{'path':22} {'time ms':>9} {'cpu ms':>9} {'extra MiB':>10} {'loss':>12}")


def print_row(r: dict) -> None:
    name = r["path"] + (f"@{r['chunk_size']}" if r.get("chunk_size") else "")
    if "seconds" in r:
        print(
            f"{name:22} {r['seconds'] * 1e3:9.1f} {r['cpu_seconds'] * 1e3:9.1f} "
            f"{r['extra_bytes'] / 2**20:10.0f} {r['loss']:12.6f}",
            flush=True,
        )
    else:
        print(f"{name:22} {r.get('skipped') or r.get('failed')}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
