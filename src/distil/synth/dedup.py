"""Near-duplicate removal: MinHash LSH over word n-grams, and an optional ROUGE-L threshold.

    dropped = near_duplicates(texts, threshold=0.9, ngram=2)      # {index: (kept_index, similarity)}
    dropped |= rouge_duplicates(texts, threshold=0.7, skip=dropped)

Both keep the first of a group in the given order and name, for each dropped text, the
kept text it repeats. MinHash estimates the Jaccard similarity of the two texts' sets of
word n-grams (lower-cased, punctuation removed); candidates come from LSH buckets and are
confirmed with the estimate. ROUGE-L is the F-measure of the longest common word
subsequence (as Self-Instruct used it at 0.7); it is exact and quadratic, so it first
discards pairs whose bag-of-words overlap already rules them out.
"""

import re
from collections import Counter
from collections.abc import Sequence

WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore)."""
    return WORD.findall(text.lower())


def shingles(tokens: Sequence[str], ngram: int) -> set[str]:
    """The set of word n-grams; a text shorter than n is one shingle of all its words."""
    if len(tokens) <= ngram:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1)}


def near_duplicates(
    texts: Sequence[str], threshold: float, ngram: int = 2, num_perm: int = 128, seed: int = 1
) -> dict[int, tuple[int, float]]:
    """Indices of texts whose estimated Jaccard similarity to an earlier kept text is >= threshold."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[str, MinHash] = {}
    dropped: dict[int, tuple[int, float]] = {}
    for index, text in enumerate(texts):
        grams = shingles(words(text), ngram)
        if not grams:
            continue
        signature = MinHash(num_perm=num_perm, seed=seed)
        signature.update_batch([g.encode() for g in grams])
        best = max(
            ((int(name), signature.jaccard(kept[name])) for name in lsh.query(signature)),
            key=lambda pair: (pair[1], -pair[0]),
            default=None,
        )
        if best is not None and best[1] >= threshold:
            dropped[index] = best
            continue
        lsh.insert(str(index), signature)
        kept[str(index)] = signature
    return dropped


def rouge_l(reference: Sequence[str], candidate: Sequence[str]) -> float:
    """ROUGE-L F-measure of two token sequences: 2·LCS / (len(a) + len(b))."""
    if not reference or not candidate:
        return 0.0
    return 2.0 * lcs_length(reference, candidate) / (len(reference) + len(candidate))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_duplicates(
    texts: Sequence[str], threshold: float, skip: dict[int, tuple[int, float]] | None = None
) -> dict[int, tuple[int, float]]:
    """Indices of texts whose ROUGE-L with an earlier kept text is >= threshold (`skip`: already dropped)."""
    skip = skip or {}
    tokens = [words(t) for t in texts]
    bags = [Counter(t) for t in tokens]
    kept: list[int] = []
    dropped: dict[int, tuple[int, float]] = {}
    for index, candidate in enumerate(tokens):
        if index in skip or not candidate:
            continue
        for other in kept:
            total = len(candidate) + len(tokens[other])
            overlap = sum((bags[index] & bags[other]).values())  # LCS <= bag overlap
            if 2.0 * overlap / total < threshold:
                continue
            score = rouge_l(tokens[other], candidate)
            if score >= threshold:
                dropped[index] = (other, score)
                break
        else:
            kept.append(index)
    return dropped
