"""What the audit tests share: a tiny teacher whose text survives decoding and re-tokenising,
and the settings of one audit mode made from shared watermark settings."""

from typing import Any, TypeVar

import torch

from distil.audit import AuditSettings
from distil.teachers import LocalTeacher

Mode = TypeVar("Mode", bound=AuditSettings)


def with_mode(mode: type[Mode], settings: AuditSettings, **values: Any) -> Mode:
    """`settings` (the watermark, the null) as the settings of audit `mode`, with `values`."""
    return mode(**{**settings.model_dump(), **values})


def printable(teacher: LocalTeacher) -> LocalTeacher:
    """The random tiny teacher writes any byte, and text with broken UTF-8 does not tokenise
    back to the same ids; keep it to printable ASCII, as a trained model would mostly be."""
    vocab = teacher.model.get_output_embeddings().weight.shape[0]
    banned = torch.tensor(
        [
            not (len(t := teacher.tokenizer.decode([i])) == 1 and t.isprintable() and t.isascii())
            and i != teacher.tokenizer.eos_token_id
            for i in range(vocab)
        ]
    )

    def mask(_module, _inputs, output):
        output.logits[..., banned] = -1e4
        return output

    teacher.model.register_forward_hook(mask)
    return teacher
