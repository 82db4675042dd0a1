"""The three audits: text, a model with open weights, a model behind an API.

    result = audit_text(documents, tokenizer, key, settings)
    result = audit_model("runs/demo/student", documents, key, settings, top_k=1)
    result = audit_api(teacher, prompts, tokenizer, key, settings, Sampling(...))

Text: the documents' own (context, token) tuples. Open weights (radioactivity, Sander et
al., 2024): teacher-force the model on a corpus that carries no watermark and take its
top-`top_k` next tokens after each context as the tuples; a model that never learnt from
the key predicts green tokens at rate gamma, one distilled from a marked teacher above it
(exp-min: its predictions score -log(1 - r) = 1 on average, one trained on marked text more).
API: prompt it and test what it generates. Every mode de-duplicates before counting, and
tests by `settings.scheme`.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from distil.audit.calibrate import calibrated_test
from distil.audit.settings import AuditSettings
from distil.audit.sources import Document, encode
from distil.errors import DataError, ModelError
from distil.provenance import WatermarkKey, score_sequences, unique_tuples
from distil.provenance.score import pooled_tuples
from distil.teachers import Sampling, Teacher


def audit_text(
    documents: list[Document], tokenizer: Any, key: WatermarkKey, settings: AuditSettings
) -> dict[str, Any]:
    """Per-document and pooled tests of texts."""
    prompts = [prompt_ids(tokenizer, d.prompt) for d in documents]
    sequences = [p + ids for p, ids in zip(prompts, encode(tokenizer, documents), strict=True)]
    starts = [len(p) for p in prompts]
    result = _pooled(sequences, starts, key, settings, "text")
    result["documents"] = [
        {"name": d.name, **score_sequences(key, settings.spec, [ids], [start]).as_dict()}
        for d, ids, start in zip(documents, sequences, starts, strict=True)
    ]
    return result


def audit_api(
    teacher: Teacher,
    prompts: list[str],
    tokenizer: Any,
    key: WatermarkKey,
    settings: AuditSettings,
    sampling: Sampling,
) -> dict[str, Any]:
    """Prompt a served model and test its generations, pooled."""
    if not prompts:
        raise DataError("no prompts to send; pass --prompts a file of prompts, or --tasks N")
    completions = teacher.generate(prompts, sampling)
    contexts = [prompt_ids(tokenizer, prompt) for prompt in prompts]
    sequences = [
        list(c.token_ids) if c.token_ids else tokenizer(c.text, add_special_tokens=False).input_ids
        for c in completions
    ]
    result = _pooled(
        [p + ids for p, ids in zip(contexts, sequences, strict=True)],
        [len(p) for p in contexts],
        key,
        settings,
        "api",
    )
    result["generated"] = {
        "prompts": len(prompts),
        "sampling": sampling.as_dict(),
        "tokens": sum(len(s) for s in sequences),
        "examples": [c.text for c in completions[:3]],
    }
    return result


def audit_model(
    model: Any,
    tokenizer: Any,
    documents: list[Document],
    key: WatermarkKey,
    settings: AuditSettings,
    top_k: int = 1,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Teacher-force `model` on the documents and test its top-k next tokens."""
    sequences, starts = forcing_inputs(tokenizer, documents, _context_length(model))
    contexts, tokens = predicted_tuples(
        model, sequences, starts, settings.context_width, top_k, batch_size, tokenizer.pad_token_id or 0
    )
    positions = len(tokens)
    contexts, tokens = unique_tuples(contexts, tokens)
    result = {
        "mode": "model",
        **calibrated_test(key, settings, contexts, tokens, positions),
        "top_k": top_k,
        "corpus": {"documents": len(documents), "tokens": sum(len(s) for s in sequences)},
    }
    return result


def _pooled(
    sequences: list[list[int]], starts: list[int], key: WatermarkKey, settings: AuditSettings, mode: str
) -> dict[str, Any]:
    contexts, tokens, positions = pooled_tuples(sequences, settings.context_width, starts)
    if positions == 0:
        raise DataError(
            f"nothing to score: every text without a prompt is shorter than the "
            f"watermark's context of {settings.context_width} tokens plus one"
        )
    return {"mode": mode, **calibrated_test(key, settings, contexts, tokens, positions)}


def _context_length(model: Any) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or 2048)


def prompt_ids(tokenizer: Any, prompt: str | None) -> list[int]:
    """The ids a chat model saw before its response: `prompt` as a user turn rendered with the
    tokenizer's chat template and the assistant's opening. The watermark's context for the
    first response tokens lies there. Empty without a prompt or a chat template."""
    if prompt is None or not getattr(tokenizer, "chat_template", None):
        return []
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False).input_ids


def forcing_inputs(
    tokenizer: Any, documents: list[Document], max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids to teacher-force and the first position scored in each: a document with a
    prompt is rendered with the chat template and only its response is scored."""
    sequences, starts = [], []
    for document in documents:
        prompt = prompt_ids(tokenizer, document.prompt)
        ids = (prompt + tokenizer(document.text, add_special_tokens=False).input_ids)[:max_length]
        if len(ids) > len(prompt):
            sequences.append(ids)
            starts.append(len(prompt))
    if not sequences:
        raise DataError(
            "the corpus has no text to teacher-force (every document empty or beyond the model's context)"
        )
    return sequences, starts


@torch.no_grad()
def predicted_tuples(
    model: Any,
    sequences: Sequence[list[int]],
    starts: Sequence[int],
    context_width: int,
    top_k: int,
    batch_size: int,
    pad_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(context, predicted token) at every scored position: contexts (N, H), tokens (N,).

    Position i predicts token i + 1 after the context ids[i - H + 1 : i + 1]; it is scored
    when that token lies in the part to score (from `starts`) and the context is whole."""
    contexts, tokens = [], []
    for first in range(0, len(sequences), batch_size):
        rows = sequences[first : first + batch_size]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)], mask[b, : len(row)] = torch.tensor(row), 1
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        if top_k > logits.shape[-1]:
            raise ModelError(
                f"--top-k {top_k} exceeds the model's vocabulary of "
                f"{logits.shape[-1]} tokens; pass at most {logits.shape[-1]}"
            )
        top = logits.topk(top_k, dim=-1).indices  # (B, T, k)
        for b, row in enumerate(rows):
            begin = max(starts[first + b] - 1, context_width - 1)
            for i in range(begin, len(row) - 1):
                window = row[i - context_width + 1 : i + 1]
                contexts += [window] * top_k
                tokens += top[b, i].tolist()
    return (np.array(contexts, dtype=np.int64).reshape(-1, context_width), np.array(tokens, dtype=np.int64))
