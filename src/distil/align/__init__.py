"""Two tokenizations of one text, side by side: spans where their token boundaries agree
(`align_spans`), and the map between the two vocabularies' shared strings (`vocabulary_map`).

    spans = align_spans(teacher_offsets, student_offsets)   # character offsets per token
    spelled_offsets([" 12", " apples"], " 12 apples")       # [(0, 3), (3, 10)], from texts
    vocab = vocabulary_map(teacher_tokenizer, student_tokenizer)
    vocab.teacher_to_student[teacher_id]                    # student id, or -1

Cross-tokenizer distillation (distil.losses.cross_tokenizer) compares the two models span
by span, and token by token over the mapped part of the vocabularies.
"""

from distil.align.spans import Span, align_spans, clean_ends, spelled_offsets, token_offsets
from distil.align.vocab import Vocabulary, VocabularyMap, token_bytes, vocabulary_map

__all__ = [
    "Span",
    "Vocabulary",
    "VocabularyMap",
    "align_spans",
    "clean_ends",
    "spelled_offsets",
    "token_bytes",
    "token_offsets",
    "vocabulary_map",
]
