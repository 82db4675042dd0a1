"""Time and peak extra memory of the dense and fused-linear divergence paths (forward + backward).

    python benchmarks/bench_loss.py                                  # CPU, issue sizes
    python benchmarks/bench_loss.py --device cuda --tokens 16384 --student-hidden 896 \
        --teacher-hidden 1536 --dtype bf16                           # GPU, with Liger if installed

TRL's chunked divergence (`trl.trainer.distillation_trainer._chunked_divergence_loss`, TRL
>= 1.16, the loss of its DistillationTrainer) runs when `trl` is installed; Liger's
`LigerFusedLinearJSDLoss` on CUDA when `liger_kernel` is.

Each path runs in its own subprocess so that its peak memory is its own. Extra memory is
the peak during one forward+backward minus the memory held before it (inputs and
weights), so the student's weight gradient, which every path must produce, is counted.
CPU peaks come from the kernel's high-water mark of resident memory (VmHWM); GPU peaks
from torch.cuda.max_memory_allocated.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _inputs(args):
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    g = torch.Generator().manual_seed(0)
    shapes = [(args.tokens, args.student_hidden), (args.vocab, args.student_hidden),
              (args.tokens, args.teacher_hidden), (args.vocab, args.teacher_hidden)]
    tensors = [(torch.randn(*s, generator=g) * 0.05).to(args.device, dtype) for s in shapes]
    tensors[0].requires_grad_()
    tensors[1].requires_grad_()
    return tensors


def _step_fn(path: str, args):
    from distil import losses

    if path == "dense":
        def step(hs, ws, ht, wt):
            with torch.no_grad():
                teacher_logits = ht @ wt.T
            values = losses.generalized_jsd(hs @ ws.T, teacher_logits, beta=0.5)
            values.mean().backward()
    elif path == "fused":
        def step(hs, ws, ht, wt):
            values = losses.fused_linear_divergence(hs, ws, ht, wt, divergence="generalized_jsd",
                                                    beta=0.5, chunk_size=args.chunk_size)
            values.mean().backward()
    elif path == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

        loss_fn = LigerFusedLinearJSDLoss(beta=0.5, temperature=1.0)

        def step(hs, ws, ht, wt):
            loss_fn(hs, ws, ht, wt).backward()
    elif path == "trl":
        from trl.trainer.distillation_trainer import _chunked_divergence_loss

        def step(hs, ws, ht, wt):
            mask = torch.ones(1, hs.shape[0], dtype=torch.long, device=hs.device)
            loss, _, _ = _chunked_divergence_loss(hs[None], ht[None], ws, wt, mask, beta=0.5)
            loss.backward()
    else:
        raise ValueError(path)
    return step


def measure(path: str, args) -> dict:
    """Run inside the child: one measured step for memory, then timed repeats."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    inputs = _inputs(args)
    step = _step_fn(path, args)
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_kib("VmRSS") * 1024
    step(*inputs)
    if cuda:
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - before
    else:
        extra = _rss_kib("VmHWM") * 1024 - before
    times = []
    for _ in range(args.repeat):
        for t in inputs[:2]:
            t.grad = None
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(*inputs)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"path": path, "extra_bytes": extra, "seconds": statistics.median(times),
            "all_seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--student-hidden", type=int, default=512)
    parser.add_argument("--teacher-hidden", type=int, default=1024)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--paths", default=None,
                        help="comma list of dense, fused, trl, liger; default dense,fused,trl "
                             "(+liger on cuda); trl and liger need their packages")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    default = "dense,fused,trl,liger" if args.device == "cuda" else "dense,fused,trl"
    paths = (args.paths or default).split(",")
    results = {}
    for path in paths:
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", path],
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(f"{path}: failed ({child.stderr.strip().splitlines()[-1:]})")
            continue
        results[path] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"N={args.tokens} V={args.vocab} Hs={args.student_hidden} Ht={args.teacher_hidden} "
          f"{args.dtype} on {args.device} ({torch.get_num_threads()} threads), generalized_jsd(0.5)")
    print(f"{'path':8} {'time s':>8} {'extra MiB':>10} {'time/dense':>11} {'mem/dense':>10}")
    dense = results.get("dense")
    for path, r in results.items():
        ratio_t = r["seconds"] / dense["seconds"] if dense else float("nan")
        ratio_m = r["extra_bytes"] / dense["extra_bytes"] if dense else float("nan")
        print(f"{path:8} {r['seconds']:8.3f} {r['extra_bytes'] / 2**20:10.0f} "
              f"{ratio_t:11.2f} {ratio_m:10.2f}")


if __name__ == "__main__":
    main()
