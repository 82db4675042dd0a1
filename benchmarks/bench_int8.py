"""Which int8 quantisation agrees with PyTorch on every x86-64 CPU? Parity of each choice.

    python benchmarks/bench_int8.py                       # tiny test student + demo teacher
    python benchmarks/bench_int8.py --model runs/demo/student

onnxruntime's dynamic int8 MatMul multiplies uint8 activations by int8 weights (U8S8). On
x86-64 CPUs without VNNI (AVX2, AVX-512 without VNNI) the kernel adds pairs of u8 x s8
products into int16 with saturation (vpmaddubsw), so large products clip; with VNNI
(vpdpbusd) they do not. The same file then answers differently by CPU. Weights in 7 bits
(`reduce_range`) keep every pair sum below the int16 limit, and uint8 weights (U8U8) go
through a widening kernel that never saturates: both compute the exact integer sums on any
CPU. This script exports each model to float32 ONNX once, quantises it every way, and
prints top-1 agreement and max |logit difference| against the float32 PyTorch model along
greedy continuations of held-out task prompts (the export stage's own parity check).
Figures depend on the CPU only through the kernel's saturation, which the table names.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

CHOICES = {
    "U8S8 per-channel": dict(weight_type="QInt8", per_channel=True, reduce_range=False),
    "U8S8 per-channel reduce_range": dict(weight_type="QInt8", per_channel=True, reduce_range=True),
    "U8S8 per-tensor reduce_range": dict(weight_type="QInt8", per_channel=False, reduce_range=True),
    "U8U8 per-channel": dict(weight_type="QUInt8", per_channel=True, reduce_range=False),
    "U8U8 per-tensor": dict(weight_type="QUInt8", per_channel=False, reduce_range=False),
}


def cpu_flags() -> str:
    """The int8-relevant instruction sets this CPU reports."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    wanted = ["avx2", "avx512bw", "avx512_vnni", "avx_vnni"]
    return ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512/vnni"


def quantise(fp32: Path, out: Path, choice: dict) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True)
    for item in fp32.iterdir():
        if item.is_file() and not item.name.startswith("model.onnx"):
            (out / item.name).write_bytes(item.read_bytes())
    quantize_dynamic(fp32 / "model.onnx", out / "model.onnx",
                     weight_type=getattr(QuantType, choice["weight_type"]),
                     per_channel=choice["per_channel"], reduce_range=choice["reduce_range"])
    return out


def measure(loaded, name: str, prompts_per_task: int, compared: int) -> list[dict]:
    from distil.export.onnx import export_onnx
    from distil.export.parity import (
        TorchVariant,
        held_out_prompts,
        logit_agreement,
        reference_outputs,
        variant_logits,
    )
    from distil.onnx_runtime import OnnxGenerator

    _, prompt_ids = held_out_prompts(loaded.tokenizer, prompts_per_task, seed=0)
    reference = reference_outputs(TorchVariant(loaded), prompt_ids, compared, 32,
                                  loaded.tokenizer.eos_token_id)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(loaded, Path(tmp) / "fp32")
        for label, choice in CHOICES.items():
            folder = quantise(fp32, Path(tmp) / label.replace(" ", "-"), choice)
            figures = logit_agreement(reference.logits,
                                      variant_logits(OnnxGenerator(folder), reference))
            rows.append({"model": name, "choice": label, **figures})
            print(f"{name:>14} | {label:<32} | top-1 {figures['top1_agreement']:.4f} | "
                  f"max |dlogit| {figures['max_abs_logit_diff']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[],
                        help="a saved model folder; repeat for several (default: tiny + demo)")
    parser.add_argument("--prompts-per-task", type=int, default=6)
    parser.add_argument("--compared", type=int, default=42)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()

    from distil.models import build_tiny, load_model
    from distil.models.loading import DEMO_TEACHER_DIR, LoadedModel

    print(f"CPU int8 features: {cpu_flags()}", file=sys.stderr)
    rows = []
    if args.model:
        for path in args.model:
            rows += measure(load_model(path, "student", dtype="float32"), Path(path).name,
                            args.prompts_per_task, args.compared)
    else:
        model, tokenizer = build_tiny("tiny-student")
        rows += measure(LoadedModel(model.float().eval(), tokenizer, "tiny-student"),
                        "tiny-student", args.prompts_per_task, args.compared)
        rows += measure(load_model(str(DEMO_TEACHER_DIR), "teacher", dtype="float32"), "demo-teacher",
                        args.prompts_per_task, args.compared)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_flags(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
