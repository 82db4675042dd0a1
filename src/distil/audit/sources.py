"""What an audit reads: documents from files, a teacher-forcing corpus, the tokenizer.

    documents = read_documents([Path("answers.jsonl")])       # [Document(name, text, prompt)]
    tokenizer = audit_tokenizer("demo")                        # a name, folder or hub id

A .txt file is one document; a .jsonl file one document per line (its `field`, else
`response`, `text` or `completion`; a `prompt` beside it is kept for teacher forcing); a
.parquet file one per row of the same columns (synth's train.parquet reads as is).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distil.errors import DataError, ModelError

TEXT_FIELDS = ("response", "text", "completion")
"""Columns read as a document's text, in this order, when no field is named."""

MAX_UNKNOWN_SHARE = 0.05
"""A tokenizer that maps more of the text than this to its unknown token is the wrong one."""


@dataclass(frozen=True)
class Document:
    """One text to test (and, for teacher forcing, the prompt it answers)."""

    name: str
    text: str
    prompt: str | None = None


def read_documents(paths: list[Path], field: str | None = None, what: str = "text") -> list[Document]:
    """Every document in `paths`; a missing, unreadable or empty input is a DataError.
    `what` names what the files hold, in messages (text, or prompt for `audit api`)."""
    if not paths:
        raise DataError("no input files given; pass one or more .txt, .jsonl or .parquet files")
    documents: list[Document] = []
    for path in paths:
        found = _read_one(Path(path), field, what)
        if not any(d.text.strip() for d in found):
            raise DataError(f"{path} holds no {what}; pass a file with {what} in it")
        documents += [d for d in found if d.text.strip()]
    return documents


def _read_one(path: Path, field: str | None, what: str) -> list[Document]:
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    if path.suffix == ".parquet":
        return _rows(path, _parquet_rows(path), field, what)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} as UTF-8 text ({err})") from None
    if path.suffix != ".jsonl":
        return [Document(path.name, text)]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number} is not JSON ({err.msg}); one object per line") from None
    return _rows(path, rows, field, what)


def _parquet_rows(path: Path) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"{path} is not a readable Parquet file ({reason}); pass a .parquet file, or the rows as .jsonl"
        ) from None


def _rows(path: Path, rows: list[Any], field: str | None, what: str) -> list[Document]:
    fix = (
        "name the text's field with --field" if what == "text" else f"each row of the {what}s file needs one"
    )
    documents = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {number} is not an object with a {what} field")
        name = field or next((f for f in TEXT_FIELDS if f in row), None)
        if name is None or name not in row:
            raise DataError(f"{path}: row {number} has no {field or ' / '.join(TEXT_FIELDS)} field; {fix}")
        prompt = row.get("prompt")
        documents.append(
            Document(
                f"{path.name}:{number}", str(row[name] or ""), prompt if isinstance(prompt, str) else None
            )
        )
    return documents


def audit_tokenizer(name: str) -> Any:
    """The tokenizer the watermarked model used (a built-in name, `demo`, a folder or a hub id)."""
    from distil.teachers.tokenmap import load_tokenizer

    try:
        return load_tokenizer(name)
    except ModelError:
        raise ModelError(
            f"cannot load the tokenizer {name!r}; pass --tokenizer the watermarked "
            "model's tokenizer (a folder, a hub id, or demo)"
        ) from None


def encode(tokenizer: Any, documents: list[Document]) -> list[list[int]]:
    """Token ids of each document's text, refusing a tokenizer that cannot read it."""
    encoded = [tokenizer(d.text, add_special_tokens=False).input_ids for d in documents]
    unknown = tokenizer.unk_token_id
    total = sum(len(ids) for ids in encoded)
    if unknown is not None and total:
        share = sum(ids.count(unknown) for ids in encoded) / total
        if share > MAX_UNKNOWN_SHARE:
            raise ModelError(
                f"the tokenizer maps {share:.0%} of the text to its unknown token: it "
                "is not the watermarked model's; pass --tokenizer that model's"
            )
    return encoded
