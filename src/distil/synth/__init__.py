"""Synthesis: the teacher answers prompts, and its answers become the training set.

    distil synth recipes/api-teacher.yaml --dry-run     # what it would send, and cost
    distil synth recipes/api-teacher.yaml               # RUN/data/train.parquet + card

Modules: `prompts` (seed file, task generators, self-instruct expansion), `dedup`
(MinHash, ROUGE-L), `plan` (the requests a run sends), `journal` (every request,
crash-safe), `driver` (sends what the journal lacks), `filters` (empty, truncated, refusal,
bounds), `output` (Parquet with provenance, rejects, card), `estimate` (the dry run),
`stage` (the `synth` stage).
"""

from distil.errors import DistilError


class SynthError(DistilError):
    """A synth run cannot start or produced nothing usable."""


class SynthIncompleteError(SynthError):
    """More requests failed after their retries than synth.max_failed_fraction allows."""
