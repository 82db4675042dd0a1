"""Run an exported GGUF file through llama.cpp (llama-cpp-python), for parity and benchmarks.

    generator = LlamaCppGenerator("runs/demo/export/gguf-q8_0")
    generator.generate_ids([[3, 83, 99, 1, 4]], max_new_tokens=16)

It speaks the interface of `OnnxGenerator` (`continuation_logits`, `generate_ids`) and,
like it, never imports PyTorch. llama.cpp decodes one sequence here, so a batch is answered
prompt by prompt (`max_batch` is 1: benchmarks time it at batch 1 only).
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distil.errors import ExportError


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python can be imported (it is an optional, source-built extra)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


class LlamaCppGenerator:
    """Greedy decoding and logits of a GGUF variant folder (or .gguf file) with llama.cpp."""

    max_batch = 1

    def __init__(self, model: str | Path, threads: int = 1, n_ctx: int | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ExportError(
                "running a GGUF file needs llama-cpp-python: pip install "
                "llama-cpp-python (it builds llama.cpp from source; see "
                "docs/export.md)"
            ) from None
        path = Path(model)
        manifest: dict[str, Any] = {}
        if path.is_dir():
            manifest = json.loads((path / "gguf.json").read_text())
            path = path / manifest["file"]
        self.manifest = {"precision": manifest.get("type", "gguf"), **manifest}
        self.llama = Llama(
            model_path=str(path),
            n_ctx=n_ctx or 0,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=True,
            verbose=False,
            seed=0,
            n_gpu_layers=0,
        )
        self.eos = {self.llama.token_eos()}

    def continuation_logits(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int]) -> np.ndarray:
        """Logits predicting each continuation token, (C, V) float32, in one evaluation."""
        self.llama.reset()
        self.llama.eval(list(prompt_ids) + list(continuation_ids))
        start = len(prompt_ids) - 1
        return np.array(self.llama.scores[start : start + len(continuation_ids)], dtype=np.float32)

    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        max_new_tokens: int,
        stop_at_eos: bool = True,
        on_token: Callable[[], None] | None = None,
    ) -> list[list[int]]:
        """Greedy continuations, one prompt after another; eos and what follows are dropped."""
        return [self._greedy(p, max_new_tokens, stop_at_eos, on_token) for p in prompt_ids]

    def _greedy(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_at_eos: bool,
        on_token: Callable[[], None] | None,
    ) -> list[int]:
        self.llama.reset()
        self.llama.eval(list(prompt))
        answer: list[int] = []
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.llama.scores[self.llama.n_tokens - 1]))
            if on_token is not None:
                on_token()
            if stop_at_eos and token in self.eos:
                break
            answer.append(token)
            if len(answer) < max_new_tokens:
                self.llama.eval([token])
        return answer
