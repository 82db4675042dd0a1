"""The dataset card written beside the synthetic data (RUN/data/README.md): teacher, counts,
filters, terms, under YAML front matter the Hub reads (`DatasetCard.load` reads it back):
licence, task and size categories, tags, the teacher and its terms, and `train.parquet` as
the train split, so that `distil push RUN --what data` makes a dataset repository."""

import json
from pathlib import Path
from typing import Any

from distil.fsutil import atomic_write_text
from distil.hub import dataset_metadata, front_matter, shown_model
from distil.recipe import Recipe
from distil.recipe.terms import terms_lines
from distil.synth.output import COLUMNS

NO_TERMS = (
    "This recipe records no terms (teacher.terms.license and synth.license are empty). The "
    "teacher's outputs come under the terms of its provider or the licence of its weights: "
    "read them before training on or sharing this data. Some providers forbid using their "
    "outputs to train competing models."
)


CARD_NAME = "README.md"
"""The card's file name in RUN/data: the name the Hub shows as a dataset's card."""


def write_card(folder: Path, recipe: Recipe, summary: dict[str, Any]) -> Path:
    """Write the dataset card into `folder` (RUN/data) from the run's summary; its path."""
    path = folder / CARD_NAME
    atomic_write_text(path, dataset_card(recipe, summary))
    return path


def dataset_card(recipe: Recipe, summary: dict[str, Any]) -> str:
    """The card's text: front matter, then the teacher, counts, settings, usage, columns, terms."""
    teacher, shown = summary["teacher"], shown_model(recipe.teacher.model)
    terms = recipe.teacher.terms
    meta = dataset_metadata(
        name=recipe.name,
        teacher=shown,
        terms=terms,
        rows=summary["responses"]["kept"],
        license=terms.license or summary["license"],
    )
    lines = [
        front_matter(meta),
        f"# {recipe.name}: synthetic prompt/response data",
        "",
        f"Written by `distil synth` (distil {summary['toolkit_version']}) on {summary['created']}.",
        "Rows: `train.parquet`; dropped prompts and responses, each with its reason: "
        "`rejects.jsonl`; all figures: `synth_summary.json`.",
        "",
    ]
    for why in (summary["stopped"], summary.get("incomplete")):
        if why:
            lines += [f"**Incomplete**: {why}", ""]
    lines += [
        "## Teacher",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | `{shown}` |",
        f"| backend | {teacher.get('backend')} |",
        f"| endpoint | {teacher.get('endpoint') or 'in process'} |",
        f"| revision | {teacher.get('revision') or 'not pinned'} |",
        "",
    ]
    named = teacher.get("model") or ""  # the probe's notes name it as it was opened
    lines += [
        f"- {note.replace(named, shown) if named and shown else note}" for note in teacher.get("notes", [])
    ] + [""]
    lines += _counts(summary) + _settings(recipe, summary) + _spend(summary)
    lines += ["## Columns", "", "| column | meaning |", "| --- | --- |"]
    lines += [f"| `{name}` | {meaning} |" for name, (_, meaning) in COLUMNS.items()]
    if summary["sampling"].get("logprobs") or summary["sampling"].get("top_logprobs"):
        lines.append("| `token_logprobs` | per response token: id (when mapped), text, logprob, top-k |")
    lines += [
        "",
        "## Terms",
        "",
        *terms_lines(recipe.teacher.terms),
        "",
        summary["license"] or (NO_TERMS if recipe.teacher.terms.license is None else ""),
        "",
    ]
    return "\n".join(lines)


def _counts(summary: dict[str, Any]) -> list[str]:
    prompts, responses = summary["prompts"], summary["responses"]
    rows = ["## Counts", "", "| | count |", "| --- | --- |"]
    rows += [f"| prompts from {source} | {n} |" for source, n in sorted(prompts["sources"].items())]
    if prompts["expansion_requests"]:
        rows.append(f"| self-instruct expansion requests | {prompts['expansion_requests']} |")
    rows += [
        f"| prompts kept after deduplication | {prompts['kept']} |",
        f"| responses requested | {responses['requested']} |",
        f"| responses kept (`train.parquet`) | {responses['kept']} |",
    ]
    rows += [f"| rejected: {reason} | {n} |" for reason, n in summary["rejected"].items()]
    not_sent = responses["not_sent"] + prompts["expansion_not_sent"]
    if not_sent:
        rows.append(f"| requests not sent yet (budget) | {not_sent} |")
    return rows + [""]


def _settings(recipe: Recipe, summary: dict[str, Any]) -> list[str]:
    sampling = {k: v for k, v in summary["sampling"].items() if k != "seed"}
    dedup = summary["dedup"]
    filters = summary["filters"]
    return [
        "## How it was made",
        "",
        f"- sampling: `{json.dumps(sampling)}`; sample k of a prompt uses seed {summary['seed']} + k; "
        f"{summary['samples_per_prompt']} sample(s) per prompt",
        f"- deduplication of prompts before any request: MinHash threshold "
        f"{dedup['minhash_threshold']} over word {dedup['ngram']}-grams "
        f"({dedup['num_perm']} permutations), ROUGE-L threshold {dedup['rouge_l']}",
        f"- response filters: empty {filters['drop_empty']}, truncated (finish_reason length) "
        f"{filters['drop_truncated']}, refusal patterns {len(filters['refusal_patterns'])}, "
        f"characters {filters['min_chars']}..{filters['max_chars'] or 'any'}, tokens "
        f"{filters['min_tokens']}..{filters['max_tokens'] or 'any'}",
        f"- task-generator prompts come from the train split only, without their answers "
        f"(seed {recipe.seed})",
        "",
    ]


def _spend(summary: dict[str, Any]) -> list[str]:
    spent = summary["spent"]
    if summary["teacher"].get("backend") != "api":
        cost = "none per token (a local teacher)"
    elif spent["priced"]:
        cost = f"{spent['cost']:.4f} {spent['currency']}"
    else:
        cost = "not priced (teacher.api.price is empty)"
    lines = [
        "## Usage",
        "",
        f"- requests (retries included): {spent['requests']}; tokens: {spent['prompt_tokens']} "
        f"prompt + {spent['completion_tokens']} completion; cost: {cost}",
    ]
    if summary.get("token_mapping"):
        lines.append(f"- {summary['token_mapping']}")
    return lines + [""]
