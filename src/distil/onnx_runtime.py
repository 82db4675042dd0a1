"""Run an exported ONNX model without PyTorch: greedy generation with a key/value cache.

Needs only onnxruntime, numpy, tokenizers and jinja2:

    from distil.export import OnnxGenerator

    generator = OnnxGenerator("runs/demo/export/onnx-int8")
    print(generator.generate(["Reverse the word: cat"], max_new_tokens=16))

The folder is one that `distil export` wrote: `model.onnx`, `export.json` (graph layout),
`tokenizer.json` and the chat template. Prompts are rendered the way training rendered
them (`distil.data.render_prompt` with template `auto`): with the chat template and a
generation prompt when the tokenizer has one, as plain text otherwise.
"""

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from distil.errors import ExportError

MANIFEST_FILE = "export.json"
ONNX_FILE = "model.onnx"
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


class PromptEncoder:
    """Tokenizer and chat template of a Hugging Face folder, read with `tokenizers` alone."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise ExportError(
                f"{folder} has no tokenizer.json; save the tokenizer with a fast "
                "(tokenizers-backed) tokenizer's save_pretrained"
            )
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = _read_json(folder / "tokenizer_config.json")
        self.special_tokens = {key: _token_text(config.get(key)) for key in SPECIAL_TOKEN_KEYS}
        self.chat_template = _read_chat_template(folder, config)

    def render(self, prompt: str) -> tuple[str, bool]:
        """The text the model sees, and whether the tokenizer adds its special tokens."""
        if self.chat_template is None:
            return prompt, True
        messages = [{"role": "user", "content": prompt}]
        text = _compile_template(self.chat_template).render(
            messages=messages, add_generation_prompt=True, **self.special_tokens
        )
        return text, False

    def encode(self, prompt: str) -> list[int]:
        """Token ids of the rendered prompt."""
        text, add_special = self.render(prompt)
        return self.tokenizer.encode(text, add_special_tokens=add_special).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, special tokens left out."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


class OnnxGenerator:
    """Greedy decoding from an exported ONNX model with onnxruntime on the CPU.

    One graph serves prefill and decoding: (input_ids, attention_mask, position_ids,
    past key/values) -> (logits, present key/values). Batches are left-padded.
    """

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import onnxruntime

        folder = Path(folder)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file() or not (folder / ONNX_FILE).is_file():
            raise ExportError(
                f"{folder} holds no {ONNX_FILE} with {MANIFEST_FILE}; point at a "
                "folder written by `distil export` (e.g. runs/NAME/export/onnx)"
            )
        self.folder = folder
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.prompts = PromptEncoder(folder)
        self.eos_token_ids = set(self.manifest["eos_token_ids"])
        self.pad_token_id = int(self.manifest["pad_token_id"])

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt, rendered with the chat template when there is one."""
        return self.prompts.encode(prompt)

    def empty_cache(self, batch: int) -> list[np.ndarray]:
        """Past keys and values of length 0, in graph input order: (B, H_kv, 0, D) each."""
        shape = (batch, self.manifest["kv_heads"], 0, self.manifest["head_dim"])
        return [np.zeros(shape, dtype=np.float32) for _ in self.manifest["past_names"]]

    def forward(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        past: list[np.ndarray],
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One call of the graph: logits (B, T, V) and the present cache (B, H_kv, P+T, D)."""
        feeds = {
            "input_ids": input_ids.astype(np.int64),
            "attention_mask": attention_mask.astype(np.int64),
            "position_ids": position_ids.astype(np.int64),
            **dict(zip(self.manifest["past_names"], past, strict=True)),
        }
        logits, *present = self.session.run(None, feeds)
        return logits, present

    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        max_new_tokens: int,
        stop_at_eos: bool = True,
        on_token: Callable[[], None] | None = None,
    ) -> list[list[int]]:
        """Greedy continuations of token-id prompts (each ends at its first eos, kept out).

        `on_token` is called after each new token of the batch is chosen (for timing).
        `stop_at_eos=False` always produces `max_new_tokens` tokens (for benchmarks).
        """
        input_ids, attention_mask = left_pad(prompt_ids, self.pad_token_id)
        positions = np.maximum(attention_mask.cumsum(axis=1) - 1, 0)
        past = self.empty_cache(len(prompt_ids))
        done = np.zeros(len(prompt_ids), dtype=bool)
        outputs: list[list[int]] = [[] for _ in prompt_ids]
        for _ in range(max_new_tokens):
            logits, past = self.forward(input_ids, attention_mask, positions, past)
            tokens = logits[:, -1].argmax(axis=-1)  # (B,)
            if on_token is not None:
                on_token()
            for row, token in enumerate(tokens.tolist()):
                if stop_at_eos and (done[row] or token in self.eos_token_ids):
                    done[row] = True
                else:
                    outputs[row].append(token)
            if done.all():
                break
            input_ids = np.where(done, self.pad_token_id, tokens)[:, None]
            positions = positions[:, -1:] + 1
            attention_mask = np.concatenate([attention_mask, np.ones_like(input_ids)], axis=1)
        return outputs

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64) -> list[str]:
        """Greedy responses to text prompts, decoded without special tokens."""
        ids = [self.encode(prompt) for prompt in prompts]
        return [self.prompts.decode(out) for out in self.generate_ids(ids, max_new_tokens)]

    def continuation_logits(self, prompt_ids: Sequence[int], continuation_ids: Sequence[int]) -> np.ndarray:
        """Logits that predict each continuation token, through the cache: (len(continuation), V).

        The prompt is one prefill call; every continuation token after it is one decoding
        call, exactly as `generate_ids` runs.
        """
        ids = np.asarray([list(prompt_ids)], dtype=np.int64)
        mask = np.ones_like(ids)
        logits, past = self.forward(ids, mask, np.arange(ids.shape[1])[None], self.empty_cache(1))
        rows = [logits[0, -1]]
        for token in list(continuation_ids)[:-1]:
            position = np.asarray([[mask.shape[1]]])
            mask = np.ones((1, mask.shape[1] + 1), dtype=np.int64)
            logits, past = self.forward(np.asarray([[token]]), mask, position, past)
            rows.append(logits[0, -1])
        return np.stack(rows)


def left_pad(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad token ids into input_ids and attention_mask, each (B, T)."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("every prompt needs at least one token")
    length = max(len(s) for s in sequences)
    input_ids = np.full((len(sequences), length), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        input_ids[row, length - len(sequence) :] = sequence
        attention_mask[row, length - len(sequence) :] = 1
    return input_ids, attention_mask


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _read_chat_template(folder: Path, config: dict[str, Any]) -> str | None:
    """chat_template.jinja (transformers 5) or the `chat_template` key of tokenizer_config.json."""
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        named = {entry["name"]: entry["template"] for entry in template}
        template = named.get("default")
    return template or None


@functools.lru_cache(maxsize=8)
def _compile_template(source: str) -> Any:
    """The chat template in a sandbox, with the helpers Hugging Face templates expect."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return environment.from_string(source)
