"""`distil push RUN --repo ID`: one folder of a run to the Hugging Face Hub, with its card.

    plan = push_plan(RUN, "student")                  # what would be sent; nothing is
    url = push_run(plan, "org/name", private=True)    # HfApi.create_repo + create_commit

`--what` picks the folder: `student` (RUN/student: weights, config, tokenizer, card),
`adapter` (RUN/adapter: the PEFT adapter of a LoRA run), `export` (RUN/export: the variants
that passed parity, parity.json and the card; never failed/) or `data` (RUN/data: what
`distil synth` wrote, train.parquet and its card, as a dataset repository).

Only the files such a repository is made of are sent, chosen by name (weights, configs,
tokenizer files, cards, data); never a dotfile, a link (it could point at any file of this
machine) or a file holding the value of a secret of the environment. The token is HF_TOKEN
from the environment, never huggingface_hub's stored login; it is not written or printed.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from distil.errors import DistilError
from distil.hub.model_card import model_card

What = Literal["student", "adapter", "export", "data"]

FOLDERS: dict[str, tuple[str, str]] = {
    "student": ("student", "model"),
    "adapter": ("adapter", "model"),
    "export": ("export", "model"),
    "data": ("data", "dataset"),
}
"""Each `--what`: its folder in the run, and the kind of Hub repository it becomes."""

SENT_SUFFIXES = (".safetensors", ".json", ".md", ".txt", ".model", ".jinja", ".onnx", ".onnx.data", ".gguf")
"""The endings of the files a model repository is made of (weights, configs, tokenizer
files, chat templates, cards, ONNX graphs, GGUF files); an Ollama `Modelfile` goes too."""

DATA_FILES = ("README.md", "train.parquet")
"""What a dataset repository gets of RUN/data: the rows and the card (not the request
journal, the rejects or the cost summary)."""

SECRET_NAME = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD)", re.IGNORECASE)
"""Environment variables whose values no pushed file may hold."""

TOKEN_ENV = "HF_TOKEN"


class PushError(DistilError):
    """A run folder cannot be pushed as asked."""


@dataclass(frozen=True)
class PushPlan:
    """What `distil push` would send."""

    folder: Path
    repo_type: str
    files: dict[str, Path | bytes]
    """Path in the repository -> the file here, or the text of a card written for the push."""


def push_plan(run_dir: Path, what: What) -> PushPlan:
    """The files of `what` in `run_dir` that would be sent, checked; nothing is sent."""
    name, repo_type = FOLDERS[what]
    folder = run_dir / name
    if not folder.is_dir():
        raise PushError(
            f"{folder} does not exist: --what {what} pushes RUN/{name}, which "
            f"{_made_by(what)}; pass the run folder that has it"
        )
    files = {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if _sent(path.relative_to(folder), what) and not path.is_symlink() and path.is_file()
    }
    lacking = [n for n in DATA_FILES if n not in files]
    if what == "data" and lacking:
        raise PushError(
            f"{folder} has no {lacking[0]}: it was not written by this version of "
            "`distil synth`; rerun `distil synth` on the recipe to write it"
        )
    if "README.md" not in files:  # a run from before cards: its card is written for the push
        files = {"README.md": model_card(run_dir).encode(), **files}
    _check_no_secret(files)
    return PushPlan(folder, repo_type, files)


def push_run(plan: PushPlan, repo_id: str, private: bool = False, message: str = "distil push") -> str:
    """Create `repo_id` (if it is not there yet) and commit the plan's files; the commit URL."""
    import httpx2
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise PushError(
            f"distil push needs a Hub token with write access in ${TOKEN_ENV}; set it "
            "in the environment (the stored `hf auth login` token is not used)"
        )
    api = HfApi(token=token)
    operations = [
        CommitOperationAdd(
            path_in_repo=name, path_or_fileobj=source if isinstance(source, bytes) else str(source)
        )
        for name, source in plan.files.items()
    ]
    try:
        api.create_repo(repo_id, repo_type=plan.repo_type, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, commit_message=message, repo_type=plan.repo_type)
    except OfflineModeIsEnabled:
        raise PushError(
            "HF_HUB_OFFLINE is set, so nothing can be sent to the Hub; unset it to push"
        ) from None
    except HfHubHTTPError as err:
        raise PushError(
            f"the Hub refused the push to {repo_id}: {str(err).splitlines()[0].replace(token, '***')}"
        ) from None
    except (httpx2.TransportError, OSError) as err:
        raise PushError(
            f"could not reach the Hub ({type(err).__name__}: "
            f"{str(err).replace(token, '***')}); check the network and HF_ENDPOINT, "
            "then push again"
        ) from None
    return commit.commit_url


def _sent(relative: Path, what: What) -> bool:
    """Whether a file (path inside the pushed folder) belongs in the repository."""
    if any(part.startswith(".") for part in relative.parts):
        return False
    if what == "data":
        return relative.as_posix() in DATA_FILES
    if what == "export" and relative.parts[0] == "failed":
        return False  # variants that missed parity: never deployable
    return relative.name == "Modelfile" or relative.name.endswith(SENT_SUFFIXES)


def _check_no_secret(files: dict[str, Path | bytes]) -> None:
    """Refuse a plan in which a file holds the value of a secret environment variable."""
    secrets = {
        name: value.encode()
        for name, value in os.environ.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= 8
    }
    if not secrets:
        return
    for name, source in files.items():
        found = _holds(source, secrets)
        if found:
            where = source if isinstance(source, Path) else f"the card written for {name}"
            raise PushError(
                f"{where} holds the value of ${found}, a secret: nothing was pushed; "
                f"remove it (or unset ${found} if it is not a secret)"
            )


def _holds(source: Path | bytes, secrets: dict[str, bytes], chunk: int = 1 << 20) -> str | None:
    """The name of a secret whose value is in the file, read in chunks that overlap."""
    if isinstance(source, bytes):
        return next((name for name, value in secrets.items() if value in source), None)
    overlap = max(len(value) for value in secrets.values()) - 1
    tail = b""
    with open(source, "rb") as f:
        while block := f.read(chunk):
            window = tail + block
            for name, value in secrets.items():
                if value in window:
                    return name
            tail = window[-overlap:] if overlap else b""
    return None


def _made_by(what: What) -> str:
    return {
        "student": "`distil train` writes",
        "adapter": "a LoRA run (student.lora) writes",
        "export": "`distil export` writes",
        "data": "`distil synth` writes",
    }[what]
