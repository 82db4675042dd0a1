"""Load teacher and student models and tokenizers, and check that they can be compared.

A model spec names a local Hugging Face folder, a hub id, a GGUF file or a packaged model
(`distil.models.gguf`, `distil.models.packaged`), a built-in tiny model, or a model handed
over in Python (`memory:...`, distil.inmemory). Weights load from safetensors only; remote
code runs only when the recipe allows it.
"""

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from distil import inmemory
from distil.errors import ModelError, VocabularyMismatchError
from distil.models.gguf import gguf_path, load_gguf
from distil.models.packaged import PACKAGED_MODELS
from distil.models.shrink import keep_layers
from distil.models.tiny import TINY_SHAPES, build_tiny

Role = Literal["teacher", "student"]
BUILTIN_MODELS = tuple(TINY_SHAPES)
DEMO_TEACHER_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo-teacher"
"""The shipped demo teacher; the model name `demo` means this folder everywhere."""


@dataclass
class LoadedModel:
    """A model, its tokenizer and where they came from (for provenance)."""

    model: PreTrainedModel
    tokenizer: object
    source: str
    """The folder, hub id, GGUF file, packaged or built-in name it was loaded from."""
    revision: str | None = None
    """The hub revision asked for; for a GGUF file, `sha256:<hex>` of the file."""


def load_model(
    model: str,
    role: Role,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    layers: list[int] | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> LoadedModel:
    """Load `model` (folder, hub id, GGUF file, packaged or built-in name) in the dtype its
    role wants, on `device`.

    `layers` keeps only those decoder layers (a shallower copy, see `keep_layers`). The
    keywords mirror the recipe's model section: `load_model(**spec.model_dump(), ...)`.
    """
    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype, role, device)
    if model == "demo" and not Path(model).exists():
        model = str(DEMO_TEACHER_DIR)
    if inmemory.is_memory_name(model):
        loaded = _held_model(model, role, dtype, torch_dtype)
    elif model in BUILTIN_MODELS and not Path(model).exists():
        network, tokenizer = build_tiny(model, seed=seed)
        loaded = LoadedModel(network.to(torch_dtype), tokenizer, source=model)
    elif (path := gguf_path(model)) is not None:
        network, tokenizer, sha = load_gguf(path, torch_dtype)
        loaded = LoadedModel(network, tokenizer, source=model, revision=f"sha256:{sha}")
    else:
        loaded = _load_pretrained(model, revision, trust_remote_code, torch_dtype)
    _ensure_pad_token(loaded)
    if layers is not None:
        keep_layers(loaded.model, layers)
    loaded.model.to(device)
    if role == "teacher":
        loaded.model.eval().requires_grad_(False)
    return loaded


def resolve_dtype(name: str, role: Role, device: torch.device) -> torch.dtype:
    """`auto`: a teacher uses bf16 on a GPU that has it; a trained student stays float32."""
    if name != "auto":
        return getattr(torch, name)
    if role == "teacher" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _held_model(name: str, role: Role, dtype: str, torch_dtype: torch.dtype) -> LoadedModel:
    """A model passed in memory. A student is a copy (training never changes the caller's
    object); a teacher is the object itself (set to eval mode and frozen, on the device), in
    its own dtype, or a copy in the dtype `dtype` names. The tokenizer is always a copy (the
    chat template and pad token may be set on it)."""
    item = inmemory.held(name)
    model = item.value
    if role == "student" or (dtype != "auto" and model.dtype != torch_dtype):
        model = copy.deepcopy(model).to(torch_dtype)
    return LoadedModel(model, copy.deepcopy(item.tokenizer), source=name)


def local_folder(source: str) -> Path | None:
    """The Hugging Face folder `source` names on this machine, checked (a folder holding a
    config.json); None when `source` is a hub id."""
    if not (Path(source).exists() or source.startswith(("/", "./", "../", "~"))):
        return None
    folder = Path(os.path.expanduser(source))
    if not folder.is_dir():
        raise ModelError(
            f"model folder not found: {source}; pass a folder in Hugging Face "
            f"format, a hub id, a .gguf file, `demo`, or one of "
            f"{', '.join(BUILTIN_MODELS + tuple(PACKAGED_MODELS))}"
        )
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{source} holds no config.json, so it is not a Hugging Face model "
            "folder; point at the folder that save_pretrained wrote"
        )
    return folder


def _load_pretrained(
    source: str, revision: str | None, trust_remote_code: bool, dtype: torch.dtype
) -> LoadedModel:
    is_local = local_folder(source) is not None
    options = {"revision": None if is_local else revision, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, use_safetensors=True, **options)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = (
            "folder"
            if is_local
            else (
                "hub id (check the id and your network; no folder of that name exists here either: "
                "build or copy it there, or write ./ before a local path)"
            )
        )
        raise ModelError(f"cannot load model {source!r} from this {where}: {first}") from None
    return LoadedModel(model, tokenizer, source=source, revision=options["revision"])


def _ensure_pad_token(loaded: LoadedModel) -> None:
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelError(
                f"tokenizer of {loaded.source} has neither a pad nor an eos token; "
                "set one in its tokenizer_config.json"
            )
        tokenizer.pad_token = tokenizer.eos_token


def output_vocab_size(model: PreTrainedModel) -> int:
    """Rows of the output head (the logit width), which may exceed the tokenizer's size."""
    return model.get_output_embeddings().weight.shape[0]


def shared_vocab_size(teacher: LoadedModel, student: LoadedModel) -> int:
    """Logit width both models share; raise `VocabularyMismatchError` if tokenizers differ.

    Models of one family often pad their heads differently (e.g. 151936 vs 152064 rows over
    the same tokenizer); the logits are then compared on the shared leading columns.
    """
    teacher_vocab, student_vocab = teacher.tokenizer.get_vocab(), student.tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        differing = len(set(teacher_vocab.items()) ^ set(student_vocab.items()))
        raise VocabularyMismatchError(
            f"teacher ({teacher.source}, {len(teacher_vocab)} tokens) and student "
            f"({student.source}, {len(student_vocab)} tokens) have different vocabularies "
            f"({differing} entries differ); logit distillation needs one shared vocabulary, so "
            "pick a student from the teacher's model family (cross-tokenizer distillation is a "
            "separate feature)"
        )
    shared = min(output_vocab_size(teacher.model), output_vocab_size(student.model))
    needed = max(teacher_vocab.values()) + 1
    if shared < needed:
        raise VocabularyMismatchError(
            f"an output head has {shared} rows but the tokenizer has ids up to {needed - 1}; "
            "the model and tokenizer do not belong together"
        )
    return shared


def tokenizer_hash(tokenizer: Any) -> str:
    """A short hash of the tokenizer's vocabulary, merges and normalisation (for fingerprints)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def chat_template_hash(tokenizer: Any) -> str | None:
    """A short hash of the tokenizer's chat template, or None when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    return hashlib.sha256(str(template).encode()).hexdigest()[:16] if template else None


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    seen = {p.data_ptr(): p.numel() for p in model.parameters()}
    return sum(seen.values())


def linear_head_weight(model: PreTrainedModel) -> torch.Tensor | None:
    """The output head's weight (V, H) when logits are exactly hidden @ weight.T, else None.

    Heads with a bias, logit scaling or soft-capping (Gemma 2, Cohere, Granite, ...) return
    None: the fused-linear path would not reproduce their logits.
    """
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return None
    config = model.config
    for attribute in (
        "final_logit_softcapping",
        "logit_scale",
        "logits_scaling",
        "output_multiplier_scale",
        "mup_width_multiplier",
    ):
        value = getattr(config, attribute, None)
        if value not in (None, 1, 1.0):
            return None
    return head.weight
