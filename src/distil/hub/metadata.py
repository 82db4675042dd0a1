"""The YAML front matter of the cards, in the fields the Hub reads.

    license_metadata("https://provider.example/terms")   # {"license": "other", "license_link": ...}
    hub_model_id("smollm2-135m-instruct")                 # "HuggingFaceTB/SmolLM2-135M-Instruct"
    front_matter(ModelCardData(...))                      # "---\\n...\\n---\\n"

The cards are built with huggingface_hub's own `ModelCardData` and `DatasetCardData`, so that
`ModelCard.load` / `DatasetCard.load` read back what was written.
"""

import re
from pathlib import Path
from typing import Any

from huggingface_hub import CardData, DatasetCardData

from distil.recipe.terms import TermsSection

LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.\-+]*$")
"""What the Hub takes as a licence id (apache-2.0, llama3.1, cc-by-4.0); a URL is written as
`license: other` with `license_link`, other text as `license: other`."""

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""A Hub repository id, `org/name`."""

BUILT_IN_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Models distil knows by a short name, and the Hub repository each one is a copy of. The
demo teacher and the tiny models are distil's own: they have none."""

SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)
"""The Hub's dataset size categories, each with the row count it stays below."""


def license_metadata(license: str | None) -> dict[str, str]:
    """The card's `license` fields for the teacher's declared terms (`unknown` when none)."""
    if license is None:
        return {"license": "unknown"}
    if LICENSE_ID.match(license.lower()):
        return {"license": license.lower()}
    if license.startswith(("http://", "https://")):
        return {"license": "other", "license_link": license}
    return {"license": "other"}


DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".txt", ".arrow")
"""Endings of a data file's name, never of a hub dataset id."""


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads `org/name` and no file or folder of that name is here."""
    return bool(name) and bool(HUB_ID.match(name)) and not Path(name).exists()


def hub_model_id(name: str | None) -> str | None:
    """`name` as a Hub model id: the Hub source of a model distil knows by a short name, or
    `name` itself when it is a hub id; None for a local folder, `demo` and the tiny
    built-in models."""
    if name in BUILT_IN_HUB_IDS:
        return BUILT_IN_HUB_IDS[name]
    return name if is_hub_id(name) else None


def shown_model(name: str | None) -> str | None:
    """A model as a shared card names it: its hub id when it has one, a local folder by its
    own name (a card is shared; this machine's folders are nobody's business), else `name`."""
    if name is None or hub_model_id(name):
        return hub_model_id(name)
    return Path(name).name if "/" in name or "\\" in name or Path(name).exists() else name


def hub_dataset_id(name: str | None) -> str | None:
    """`name` when it is a hub dataset id (not a data file's path), else None."""
    return name if is_hub_id(name) and not name.lower().endswith(DATA_SUFFIXES) else None


def terms_metadata(terms: TermsSection) -> dict[str, Any]:
    """The teacher's terms as card metadata (fields left empty are left out)."""
    return {k: v for k, v in terms.model_dump().items() if v is not None}


def size_category(rows: int) -> str:
    """The Hub's size category of a dataset of `rows` rows."""
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>1B")


def dataset_metadata(
    *, name: str, teacher: str | None, terms: TermsSection, rows: int, license: str | None
) -> DatasetCardData:
    """The dataset card's metadata: a text-generation set written by `teacher` (as the card
    names it: distil.hub.metadata.shown_model) under its terms
    (`license`: the teacher's licence, else synth.license), its train split `train.parquet`."""
    return DatasetCardData(
        pretty_name=f"{name}: synthetic prompt/response data from {teacher}",
        **license_metadata(license),
        task_categories=["text-generation"],
        size_categories=[size_category(rows)],
        tags=["distillation", "synthetic"],
        teacher=teacher,
        teacher_terms=terms_metadata(terms) or None,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "train.parquet"}]}],
    )


def front_matter(data: CardData) -> str:
    """A card's YAML front matter, between its `---` lines."""
    return f"---\n{data.to_yaml()}\n---\n"
