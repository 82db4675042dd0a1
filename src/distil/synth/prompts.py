"""Prompt sources for synthesis: a seed file, task generators, self-instruct expansion.

    items, rejects = seed_prompts(recipe.synth.prompts, seed=0)
    messages = expansion_messages([i.text for i in items], index=3, examples=3, seed=0)
    kept, dropped = deduplicate(items + expanded, recipe.synth.dedup)

Task generators give prompts only, never their reference answers, and only from the
`train` split. Every prompt has a stable id (a hash of its text) and names its source:
`file`, `task:<family>` or `self_instruct`.
"""

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from distil.data import read_table
from distil.errors import DataError
from distil.recipe.synth import DedupSection, SynthPromptsSection
from distil.synth import SynthError
from distil.synth.dedup import near_duplicates, rouge_duplicates
from distil.tasks import generate_items

EXPAND_TEMPLATE = (
    "You write new instructions for a language model to answer.\n\n"
    "Examples:\n{examples}\n\n"
    "Write one new instruction that differs from the examples but is of the same kind. "
    "Reply with the instruction only."
)


@dataclass(frozen=True)
class PromptItem:
    """One prompt, its stable id and where it came from."""

    prompt_id: str
    text: str
    source: str


@dataclass(frozen=True)
class PromptReject:
    """A prompt dropped before any request: empty, or a near-duplicate of a kept one."""

    item: PromptItem
    reason: str
    detail: str


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def item(text: str, source: str) -> PromptItem:
    return PromptItem(prompt_id(text), text, source)


def seed_prompts(section: SynthPromptsSection, seed: int) -> tuple[list[PromptItem], list[PromptReject]]:
    """Prompts from the seed file, then from the task generators (train split, prompts only)."""
    items: list[PromptItem] = []
    rejects: list[PromptReject] = []
    if section.file:
        for number, text in enumerate(read_prompt_file(Path(section.file), section.field), start=1):
            if isinstance(text, str) and text.strip():
                items.append(item(text.strip(), "file"))
            else:
                rejects.append(
                    PromptReject(
                        item(str(text or ""), "file"),
                        "empty_prompt",
                        f"row {number} of {section.file} holds no prompt text",
                    )
                )
    if section.tasks:
        for task in generate_items("train", section.per_task, seed, list(section.tasks)):
            items.append(item(task.prompt, f"task:{task.task}"))
    return items, rejects


def read_prompt_file(path: Path, field: str) -> list[object]:
    """The prompt column of a .jsonl/.parquet file, or the non-blank lines of a .txt file."""
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise SynthError(f"prompt file not found: {path}; check synth.prompts.file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            line = path.read_bytes()[: err.start].count(b"\n") + 1
            raise SynthError(
                f"{path} line {line} is not UTF-8 text (byte {err.start}); save the prompt file as UTF-8"
            ) from None
        return [line for line in text.splitlines() if line.strip()]
    try:
        table = read_table(path)
    except DataError as err:
        raise SynthError(f"synth.prompts.file: {err}") from None
    if field not in table.column_names:
        raise SynthError(
            f"{path} has no column {field!r} (columns: {', '.join(table.column_names)}); "
            "set synth.prompts.field to the column holding the prompts"
        )
    return table.column(field).to_pylist()


def expansion_messages(seeds: list[str], index: int, examples: int, seed: int) -> list[dict[str, str]]:
    """The self-instruct request number `index`: a seeded sample of seeds as examples."""
    rng = random.Random(f"{seed}:expand:{index}")
    chosen = rng.sample(seeds, min(examples, len(seeds)))
    listed = "\n".join(f"{n}. {text}" for n, text in enumerate(chosen, start=1))
    return [{"role": "user", "content": EXPAND_TEMPLATE.format(examples=listed)}]


NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


def clean_expansion(text: str) -> str:
    """The instruction in an expansion reply: its first non-blank line, numbering and quotes removed."""
    for line in text.splitlines():
        line = NUMBERING.sub("", line).strip().strip('"“”').strip()
        if line:
            return line
    return ""


def deduplicate(
    items: list[PromptItem], section: DedupSection
) -> tuple[list[PromptItem], list[PromptReject]]:
    """Drop exact and near-duplicate prompts, keeping the first of each group."""
    texts = [i.text for i in items]
    dropped: dict[int, tuple[int, float]] = {}
    exact: dict[str, int] = {}
    for index, text in enumerate(texts):
        if text in exact:
            dropped[index] = (exact[text], 1.0)
        else:
            exact[text] = index
    how = {index: "identical" for index in dropped}
    if section.minhash_threshold is not None:
        unique = [i for i in range(len(texts)) if i not in dropped]
        found = near_duplicates(
            [texts[i] for i in unique], section.minhash_threshold, section.ngram, section.num_perm
        )
        for local, (kept, score) in found.items():
            dropped[unique[local]] = (unique[kept], score)
            how[unique[local]] = f"MinHash Jaccard ~{score:.2f}"
    if section.rouge_l is not None:
        for index, (kept, score) in rouge_duplicates(texts, section.rouge_l, skip=dropped).items():
            dropped[index] = (kept, score)
            how[index] = f"ROUGE-L {score:.2f}"
    kept_items = [it for index, it in enumerate(items) if index not in dropped]
    rejects = [
        PromptReject(items[index], "near_duplicate", f"{how[index]} with prompt {items[kept].prompt_id}")
        for index, (kept, _) in sorted(dropped.items())
    ]
    return kept_items, rejects
