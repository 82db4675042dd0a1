"""Time one model's generations on request, in a process of its own kept for the whole bench.

    python -m distil.bench.worker SPEC.json

It loads the model SPEC names, through the function the spec names (`opener`, the export
format's `bench_open` for an exported variant), and prints one JSON line (params, dtype,
load_seconds, max_batch); then each line read from stdin, {"batch": B}, is answered with one
timed greedy generation, {"stamps": [t_1, ..., t_N]}; at the end of stdin it prints
peak_rss_bytes and torch_imported, and exits. `distil.bench.run` keeps one such process per
model and asks them in turn, so that teacher and student are timed under the same load, and
each peak RSS is still that model's alone. An ONNX model runs through `OnnxGenerator` and
never imports PyTorch (the last line says whether it did); a PyTorch model runs the same
greedy loop as `OnnxGenerator.generate_ids`, with a `DynamicCache`, under
`torch.inference_mode`.
"""

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO


class TorchGreedy:
    """Greedy decoding of a PyTorch causal LM with a key/value cache, left-padded batches."""

    def __init__(self, model: str, threads: int, dtype: str = "float32") -> None:
        import torch
        from transformers.utils import logging as hf_logging

        from distil.models import count_parameters, load_model
        from distil.models.cache import cache_argument

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        torch.set_num_threads(threads)
        loaded = load_model(model, "teacher", dtype=dtype)
        self.model = loaded.model
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.pad_token_id = loaded.tokenizer.pad_token_id
        self.params = count_parameters(self.model)
        self.cache_argument = cache_argument(self.model)

    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        max_new_tokens: int,
        stop_at_eos: bool = False,
        on_token: Callable[[], None] | None = None,
    ) -> list[list[int]]:
        """`max_new_tokens` greedy tokens per prompt (benchmarks never stop at eos)."""
        import torch
        from transformers import DynamicCache

        from distil.models.cache import returned_cache
        from distil.onnx_runtime import left_pad

        if stop_at_eos:
            raise ValueError("the benchmark loop always generates max_new_tokens tokens")
        ids, mask = (torch.from_numpy(a) for a in left_pad(prompt_ids, self.pad_token_id))
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        cache = DynamicCache()
        outputs = []
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                out = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    **{self.cache_argument: cache},
                )
                cache = returned_cache(out)
                ids = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
                if on_token is not None:
                    on_token()
                outputs.append(ids)
                positions = positions[:, -1:] + 1
                mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
        return torch.cat(outputs, dim=1).tolist()


def open_model(spec: dict[str, Any]) -> tuple[Any, int | None, str]:
    """The runner for `spec`, its parameter count and its weights' precision, from the opener
    the spec names ("module:function"; an export format's `bench_open`)."""
    from distil.export_formats import resolve

    return resolve(spec["opener"])(spec["model"], int(spec["threads"]))


def open_float32(model: str, threads: int) -> tuple[Any, int | None, str]:
    """A PyTorch model (a folder, `demo`, a built-in name) in float32: teacher and student."""
    runner = TorchGreedy(model, threads, "float32")
    return runner, runner.params, runner.dtype


def open_saved_dtype(model: str, threads: int) -> tuple[Any, int | None, str]:
    """A Hugging Face folder in the dtype its config.json records (an `hf` export)."""
    config = json.loads((Path(model) / "config.json").read_text())
    runner = TorchGreedy(model, threads, config.get("dtype") or config.get("torch_dtype") or "float32")
    return runner, runner.params, runner.dtype


def open_onnx(model: str, threads: int) -> tuple[Any, int | None, str]:
    """An ONNX folder, through onnxruntime alone (no PyTorch in the process)."""
    from distil.onnx_runtime import OnnxGenerator

    generator = OnnxGenerator(model, threads=threads)
    return generator, generator.manifest.get("params"), generator.manifest["precision"]


def open_llama_cpp(model: str, threads: int) -> tuple[Any, int | None, str]:
    """A GGUF folder, through llama.cpp (one sequence at a time)."""
    from distil.llama_runtime import LlamaCppGenerator

    runner = LlamaCppGenerator(model, threads=threads)
    return runner, runner.manifest.get("params"), runner.manifest["precision"]


def time_generation(runner: Any, prompt_ids: list[list[int]], new_tokens: int) -> list[float]:
    """Seconds from the call to each new token: [t_1, ..., t_N] (t_1 is time to first token)."""
    stamps: list[float] = []
    started = time.perf_counter()
    runner.generate_ids(
        prompt_ids,
        new_tokens,
        stop_at_eos=False,
        on_token=lambda: stamps.append(time.perf_counter() - started),
    )
    if len(stamps) != new_tokens:
        raise RuntimeError(f"expected {new_tokens} tokens, got {len(stamps)}")
    return stamps


class Session:
    """A loaded model that times one greedy generation per request."""

    def __init__(self, spec: dict[str, Any]) -> None:
        started = time.perf_counter()
        self.runner, self.params, self.dtype = open_model(spec)
        self.load_seconds = time.perf_counter() - started
        self.prompts: list[list[int]] = spec["prompt_ids"]
        self.new_tokens = int(spec["new_tokens"])

    def header(self) -> dict[str, Any]:
        """What loading found; `max_batch` is the most sequences a run may hold (None: any)."""
        return {
            "params": self.params,
            "dtype": self.dtype,
            "load_seconds": round(self.load_seconds, 3),
            "max_batch": getattr(self.runner, "max_batch", None),
        }  # llama.cpp's runner: 1

    def run(self, batch: int) -> list[float]:
        """One timed generation of `batch` sequences (the prompts, repeated to fill it)."""
        chosen = [self.prompts[i % len(self.prompts)] for i in range(batch)]
        return time_generation(self.runner, chosen, self.new_tokens)

    @staticmethod
    def footer() -> dict[str, Any]:
        return {"peak_rss_bytes": peak_rss_bytes(), "torch_imported": "torch" in sys.modules}


def serve(spec: dict[str, Any], requests: TextIO, replies: TextIO) -> None:
    """Load, say so, answer every request line, then report memory (module docstring)."""
    session = Session(spec)
    _reply(replies, session.header())
    for line in requests:
        if line.strip():
            _reply(replies, {"stamps": session.run(int(json.loads(line)["batch"]))})
    _reply(replies, session.footer())


def _reply(replies: TextIO, message: dict[str, Any]) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


def peak_rss_bytes() -> int:
    """This program's peak resident memory.

    Linux's VmHWM starts afresh at exec; getrusage's ru_maxrss would also count what the
    parent held when it forked this process (hundreds of MiB when the parent has PyTorch).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def main() -> None:
    """Serve the spec file named on the command line over stdin and stdout."""
    spec = json.loads(Path(sys.argv[1]).read_text())
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what libraries print stays out of the replies
    serve(spec, sys.stdin, replies)


if __name__ == "__main__":
    main()
