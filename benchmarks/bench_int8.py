"""Which int8 ONNX agrees with PyTorch, is faster than float32 ONNX, and sums exactly on any CPU?

    python benchmarks/bench_int8.py                       # tiny test student + demo teacher
    python benchmarks/bench_int8.py --model runs/NAME/student --rounds 5
    python benchmarks/bench_int8.py --model runs/smollm2/student --tasks instruct --compared 54 --rounds 0
    python benchmarks/bench_int8.py --probe               # does this CPU's int8 kernel saturate?

Each model is exported to float32 ONNX once and quantised every way in CHOICES. For each
way: top-1 agreement and max |logit difference| against the float32 PyTorch model along
greedy continuations of held-out task prompts (the export stage's own parity check), file
size, and decoding speed at batch 1 on one thread (tokens/s, `--rounds` rounds, the
variants interleaved within each round so that a busy machine slows them alike; the median
is printed with the load average, and the ratio to float32 ONNX taken within each round,
its median and range over the rounds). `--choices` / `--skip` pick by substring.

`--probe` multiplies operands that every scheme quantises exactly (activations and weights
in {0, 1} or {-1, 0}: 1 lands on the top code of each 8-bit range) through each int8
kernel and compares with the exact sums, so an error beyond float rounding is the kernel
clipping its integer sums. onnxruntime picks the kernel from the CPU (AVX2, AVX-VNNI,
AVX-512, ARM): run it on the CPU you deploy to. Dynamic U8S8 is the positive control: it
clips on x86 CPUs without VNNI.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx


def dynamic(weight: str, ops: list[str] | None = None, head_only: bool = False) -> Callable:
    """onnxruntime dynamic quantisation (MatMulInteger, activations uint8 per tensor)."""

    def build(src: Path, dst: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        model, exclude = onnx.load(str(src / "model.onnx")), []
        if head_only:
            exclude = other_matmuls(model)
        quantize_dynamic(
            model,
            dst / "model.onnx",
            weight_type=getattr(QuantType, weight),
            per_channel=True,
            op_types_to_quantize=ops,
            nodes_to_exclude=exclude,
        )

    return build


def head_nbits(bits: int, accuracy_level: int) -> Callable:
    """MatMulNBits on the output head only, blocks of 32; the table and layers stay float."""

    def build(src: Path, dst: Path) -> None:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(src / "model.onnx"))
        quantiser = MatMulNBitsQuantizer(
            model,
            bits=bits,
            block_size=32,
            accuracy_level=accuracy_level or None,
            nodes_to_exclude=other_matmuls(model),
        )
        quantiser.process()
        onnx.save_model(quantiser.model.model, str(dst / "model.onnx"))

    return build


def distil_int8(per_channel: bool = True, layers: str | None = None) -> Callable:
    """distil's quantize_int8; `layers` also quantises the decoder layers ("nbits", "dynamic")."""

    def build(src: Path, dst: Path) -> None:
        from distil.export.onnx import quantize_int8

        tmp = dst.with_name(dst.name + "-head")
        quantize_int8(src, tmp, per_channel=per_channel)
        model = onnx.load(str(tmp / "model.onnx"))
        if layers == "nbits":
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            quantiser = MatMulNBitsQuantizer(model, bits=8, block_size=32, accuracy_level=4)
            quantiser.process()
            model = quantiser.model.model
        elif layers == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                model,
                tmp / "layers.onnx",
                weight_type=QuantType.QUInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
            model = onnx.load(str(tmp / "layers.onnx"))
        onnx.save_model(model, str(dst / "model.onnx"))

    return build


def head_table_block(block_size: int, table: bool = True) -> Callable:
    """distil's head (MatMulNBits, int8 activations) at another block size; `table=False`
    leaves the embedding table float."""

    def build(src: Path, dst: Path) -> None:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        from distil.export.onnx_int8 import INT8_ACTIVATIONS, quantise_head

        model = onnx.load(str(src / "model.onnx"))
        if table:
            model = quantise_head(model, block_size)
        else:
            quantiser = MatMulNBitsQuantizer(
                model,
                bits=8,
                block_size=block_size,
                is_symmetric=False,
                accuracy_level=INT8_ACTIVATIONS,
                nodes_to_exclude=other_matmuls(model),
            )
            quantiser.process()
            model = quantiser.model.model
        onnx.save_model(model, str(dst / "model.onnx"))

    return build


HEAD_INPUT_MAX: dict[str, np.ndarray] = {}
"""Per-channel max |activation| entering the head, by model name (set by `calibrate`)."""


def smoothed_head(alpha: float) -> Callable:
    """SmoothQuant-style: the head's input channel k divided by s_k and its weight row
    multiplied by it (s_k = a_k^alpha / w_k^(1 - alpha), a_k the calibrated max |input|,
    w_k the row's max |weight|), then distil's 8-bit head, block 32; the table gets its own
    8-bit copy (the scaled head no longer holds its rows)."""

    def build(src: Path, dst: Path) -> None:
        from onnx import helper, numpy_helper
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        from distil.export.onnx_int8 import (
            INT8_ACTIVATIONS,
            _embedding_gathers,
            _initializer,
            _quantise_gather,
            untie_head,
        )

        model = onnx.load(str(src / "model.onnx"))
        head, _ = untie_head(model)
        graph, weight = model.graph, _initializer(model.graph, head.input[1])
        matrix = numpy_helper.to_array(weight)  # (K, V)
        activation = HEAD_INPUT_MAX[src.parent.name]
        scale = activation**alpha / np.abs(matrix).max(axis=1) ** (1 - alpha)
        scale = np.clip(scale, 1e-5, None).astype(np.float32)
        weight.CopyFrom(numpy_helper.from_array((matrix * scale[:, None]).astype(np.float32), weight.name))
        graph.initializer.append(numpy_helper.from_array(1 / scale, "head_smoothing"))
        smoothed = head.input[0] + "_smoothed"
        graph.node.insert(
            list(graph.node).index(head),
            helper.make_node("Mul", [head.input[0], "head_smoothing"], [smoothed], name="head_smoothing"),
        )
        head.input[0] = smoothed
        quantiser = MatMulNBitsQuantizer(
            model,
            bits=8,
            block_size=32,
            is_symmetric=False,
            accuracy_level=INT8_ACTIVATIONS,
            nodes_to_exclude=[n.name for n in graph.node if n.op_type == "MatMul" and n is not head],
        )
        quantiser.process()
        model = quantiser.model.model
        for gather in _embedding_gathers(model.graph):
            _quantise_gather(model, gather, None, 32)
        onnx.save_model(model, str(dst / "model.onnx"))

    return build


def calibrate(loaded, prompt_ids: list[list[int]]) -> np.ndarray:
    """Max |activation| per channel entering the head (the final norm's output), over greedy
    16-token answers to `prompt_ids` (other prompts than the ones agreement is measured on)."""
    import torch

    maxima = []
    norm = loaded.model.get_decoder().norm
    hook = norm.register_forward_hook(
        lambda module, inputs, output: maxima.append(output.detach().abs().flatten(0, -2).amax(0))
    )
    try:
        with torch.no_grad():
            for ids in prompt_ids:
                loaded.model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    finally:
        hook.remove()
    return torch.stack(maxima).amax(0).double().numpy()


CHOICES: dict[str, Callable[[Path, Path], None]] = {
    "dynamic U8U8, every MatMul + Gather (before)": dynamic("QUInt8"),
    "dynamic U8U8, decoder layers only": dynamic("QUInt8", ops=["MatMul"]),
    "dynamic U8U8, head only": dynamic("QUInt8", ops=["MatMul"], head_only=True),
    "MatMulNBits 4-bit head, float activations": head_nbits(4, 0),
    "MatMulNBits 8-bit head, float activations": head_nbits(8, 0),
    "8-bit head + table, int8 activations, block 32 (chosen)": distil_int8(),
    "8-bit head + table, int8 activations, block 128": distil_int8(per_channel=False),
    "8-bit head + table, int8 activations, block 16": head_table_block(16),
    "8-bit head only (table float), int8 activations, block 32": head_table_block(32, table=False),
    "8-bit head + table, block 32, smoothed head (alpha 0.5)": smoothed_head(0.5),
    "chosen + decoder layers MatMulNBits 8-bit": distil_int8(layers="nbits"),
    "chosen + decoder layers dynamic U8U8": distil_int8(layers="dynamic"),
}


def other_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of every MatMul but the head's, after making the head's weight a constant."""
    from distil.export.onnx_int8 import untie_head

    head, _ = untie_head(model)
    return [node.name for node in model.graph.node if node.op_type == "MatMul" and node is not head]


def cpu_flags() -> str:
    """The int8-relevant instruction sets this CPU reports."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    wanted = ["avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"]
    return ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512/vnni"


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def quantise(fp32: Path, out: Path, build: Callable[[Path, Path], None]) -> Path:
    """Copy the export folder's side files to `out`, then write its model.onnx with `build`."""
    from distil.export.onnx import _quiet_exporter

    out.mkdir(parents=True)
    for item in fp32.iterdir():
        if item.is_file() and not item.name.startswith("model.onnx"):
            (out / item.name).write_bytes(item.read_bytes())
    with _quiet_exporter():
        build(fp32, out)
    return out


def tokens_per_second(folders: dict[str, Path], rounds: int, new_tokens: int) -> dict[str, list[float]]:
    """Greedy tokens/s of each round at batch 1 on one thread; variants interleaved per round."""
    from distil.onnx_runtime import OnnxGenerator

    generators = {name: OnnxGenerator(folder, threads=1) for name, folder in folders.items()}
    prompt = [list(range(100, 130))]  # 30 tokens
    for generator in generators.values():
        generator.generate_ids(prompt, 4, stop_at_eos=False)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in generators}
    for _ in range(rounds):
        for name, generator in generators.items():
            start = time.perf_counter()
            generator.generate_ids(prompt, new_tokens, stop_at_eos=False)
            rates[name].append(new_tokens / (time.perf_counter() - start))
    return rates


def speed_figures(rates: list[float], baseline: list[float]) -> dict[str, float]:
    """Median tokens/s, and the ratio to the baseline's rate in the same round (median, range):
    a round's variants ran within seconds of each other, so a change of load moves both."""
    ratios = [rate / base for rate, base in zip(rates, baseline, strict=True)]
    return {
        "tokens_per_s": statistics.median(rates),
        "speedup": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
    }


def measure(loaded, name: str, args: argparse.Namespace) -> list[dict]:
    from distil.export.onnx import export_onnx
    from distil.export.parity import (
        TorchVariant,
        held_out_prompts,
        logit_agreement,
        reference_outputs,
        variant_logits,
    )
    from distil.onnx_runtime import OnnxGenerator

    tasks = args.tasks or None
    _, prompt_ids = held_out_prompts(loaded.tokenizer, args.prompts_per_task, seed=0, tasks=tasks)
    reference = reference_outputs(
        TorchVariant(loaded), prompt_ids, args.compared, 32, loaded.tokenizer.eos_token_id
    )
    chosen = {
        label: build
        for label, build in CHOICES.items()
        if (not args.choices or any(part in label for part in args.choices))
        and not any(part in label for part in args.skip)
    }
    rows, folders = [], {}
    if any("smoothed" in label for label in chosen):  # calibrated on other prompts (seed 1)
        _, calibration = held_out_prompts(loaded.tokenizer, args.prompts_per_task, seed=1, tasks=tasks)
    with tempfile.TemporaryDirectory() as tmp:
        if any("smoothed" in label for label in chosen):
            HEAD_INPUT_MAX[Path(tmp).name] = calibrate(loaded, calibration)
        fp32 = export_onnx(loaded, Path(tmp) / "fp32")
        folders["float32 ONNX"] = fp32
        for index, (label, build) in enumerate(chosen.items()):
            folder = quantise(fp32, Path(tmp) / f"choice-{index}", build)
            figures = logit_agreement(
                reference.logits, variant_logits(OnnxGenerator(folder, threads=1), reference)
            )
            mib = (folder / "model.onnx").stat().st_size / 2**20
            rows.append({"model": name, "choice": label, "mib": mib, **figures})
            folders[label] = folder
            print(
                f"{name} | {label} | top-1 {figures['top1_agreement']:.4f} of "
                f"{figures['positions']} positions | max |dlogit| "
                f"{figures['max_abs_logit_diff']:.3f} | {mib:.1f} MiB",
                flush=True,
            )
        if args.rounds:
            before = load_average()
            speed = tokens_per_second(folders, args.rounds, args.new_tokens)
            print(f"load average {before} before, {load_average()} after the timing")
            rows.append(
                {"model": name, "choice": "float32 ONNX", "mib": (fp32 / "model.onnx").stat().st_size / 2**20}
            )
            for row in rows:
                row.update(
                    speed_figures(speed[row["choice"]], speed["float32 ONNX"]), rounds=speed[row["choice"]]
                )
                print(
                    f"{name} | {row['choice']} | {row['tokens_per_s']:.1f} tokens/s (batch 1, "
                    f"one thread) | x{row['speedup']:.2f} float32 ONNX (rounds "
                    f"{row['speedup_min']:.2f}-{row['speedup_max']:.2f})"
                )
    return rows


def probe() -> list[dict]:
    """Max |int8 path - exact| / max |exact| for each kernel on extreme inputs."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime import InferenceSession
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from distil.export.onnx import _quiet_exporter

    weight, groups = extreme_operands()
    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"], name="matmul")],
        "probe",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    rows = []
    for label, quantiser in {
        "MatMulNBits 8-bit, int8 activations (chosen)": lambda path: onnx.save_model(
            nbits_model(model), path
        ),
        "dynamic U8U8 per channel": lambda path: quantize_dynamic(
            model, path, weight_type=QuantType.QUInt8, per_channel=True
        ),
        "dynamic U8S8 per channel (control)": lambda path: quantize_dynamic(
            model, path, weight_type=QuantType.QInt8, per_channel=True
        ),
    }.items():
        with tempfile.TemporaryDirectory() as tmp:
            with _quiet_exporter():
                quantiser(Path(tmp) / "q.onnx")
            session = InferenceSession(str(Path(tmp) / "q.onnx"), providers=["CPUExecutionProvider"])
            errors = {1: 0.0, len(groups[0]): 0.0}  # decoding and prefill kernels
            for activations in [*groups, *(row[None] for group in groups for row in group)]:
                exact = activations.astype(np.float64) @ weight.astype(np.float64)  # (M, N)
                got = session.run(None, {"A": activations})[0]
                error = float(np.abs(got - exact).max() / np.abs(exact).max())
                errors[len(activations)] = max(errors[len(activations)], error)
            rows += [{"kernel": label, "rows": m, "relative_error": e} for m, e in errors.items()]
    return rows


def extreme_operands() -> tuple[np.ndarray, list[np.ndarray]]:
    """W (256, 64) and two groups of A rows (3, 256), all in {0, 1} or all in {-1, 0}.

    Every scheme then quantises them exactly (each range includes 0, and 1 maps to the top
    code), so the only possible error is a kernel's integer sums clipping: 1 x 1 products
    are the largest each kernel can be given.
    """
    rng = np.random.default_rng(0)
    k = 256
    ones = np.ones(k)
    halves = (np.arange(k) % 2).astype(float)
    random = rng.integers(0, 2, k).astype(float)
    weight = np.stack([ones, -ones, random, -random] * 16, axis=1).astype(np.float32)  # (K, N)
    positive = np.stack([ones, halves, random]).astype(np.float32)  # (3, K)
    return weight, [positive, -positive]


def nbits_model(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantiser = MatMulNBitsQuantizer(
        onnx.ModelProto.FromString(model.SerializeToString()), bits=8, block_size=32, accuracy_level=4
    )
    quantiser.process()
    return quantiser.model.model


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="a saved model folder; repeat for several (default: tiny + demo)",
    )
    parser.add_argument(
        "--choices",
        action="append",
        default=[],
        help="measure only choices whose label holds this text; repeatable",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help="leave out choices whose label holds this text; repeatable",
    )
    parser.add_argument("--prompts-per-task", type=int, default=6)
    parser.add_argument(
        "--tasks",
        action="append",
        default=[],
        help="task families of the held-out prompts (e.g. instruct); default: the demo's",
    )
    parser.add_argument("--compared", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; 0 skips timing")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--probe", action="store_true", help="only the saturation probe")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)

    print(f"CPU int8 features: {cpu_flags()}; load average {load_average()}", file=sys.stderr)
    if args.probe:
        rows = probe()
        for row in rows:
            print(
                f"{row['kernel']:<46} | {row['rows']} rows | max error / max |y| {row['relative_error']:.2e}"
            )
    else:
        rows = [row for loaded, name in models(args.model) for row in measure(loaded, name, args)]
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_flags(), "rows": rows}, indent=1))
    return rows


def models(paths: list[str]):
    """(LoadedModel, short name) of each --model folder, or of the tiny student and demo teacher."""
    from distil.models import build_tiny, load_model
    from distil.models.loading import DEMO_TEACHER_DIR, LoadedModel

    if paths:
        for path in paths:
            yield load_model(path, "student", dtype="float32"), Path(path).name
        return
    model, tokenizer = build_tiny("tiny-student")
    yield LoadedModel(model.float().eval(), tokenizer, "tiny-student"), "tiny-student"
    yield load_model(str(DEMO_TEACHER_DIR), "teacher", dtype="float32"), "demo-teacher"


if __name__ == "__main__":
    main()
