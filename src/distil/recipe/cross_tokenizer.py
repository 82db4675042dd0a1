"""Recipe section `cross_tokenizer:`: distilling a teacher whose tokenizer is not the student's."""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import Section


class CrossTokenizerSection(Section):
    """A teacher and a student with different tokenizers (docs/cross-tokenizer.md).

    Both tokenize the same response; the loss compares them on the spans where their token
    boundaries agree. The teacher is live, or read from a store captured with its own token
    strings and offsets (signals.path).
    """

    method: Literal["off", "aligned", "uld"] = "off"
    """`off`: teacher and student must share one vocabulary (a mismatch is an error).
    `aligned`: distill.divergence over the tokens both vocabularies spell alike, plus one bucket
    for the rest, per span (each side's span probability by the chain rule over its tokens).
    `uld`: Universal Logit Distillation, the L1 distance between the two sides' sorted span
    probabilities over the top_k largest and the tail; needs no vocabulary map, and is blind
    to which token holds the mass, so use it with distill.ce_weight > 0. With
    signals.path, `distil capture` (run with this field set) stores the teacher on its own
    tokens. See docs/cross-tokenizer.md."""
    top_k: Annotated[int, Field(ge=1)] = 32
    """`uld`: how many of the largest span probabilities each side compares one by one (the
    rest are summed into a tail), at most capture.top_k from a store. `aligned` uses the live
    teacher's whole distribution, or the store's top-k."""
