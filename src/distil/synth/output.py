"""What a synth run leaves in RUN/data: the training Parquet, the rejects, a summary.

`train.parquet` holds one row per kept response: `id`, `prompt`, `response` (what
`distil.data.load_pairs` reads) and provenance columns (`COLUMNS`). `rejects.jsonl` holds
every dropped prompt or response with a `reason` code and a `detail`. Rows come out in
prompt order, then sample order, whatever order the requests finished in, so a resumed
run writes the same files as an uninterrupted one. Every file is written atomically.
"""

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distil.fsutil import atomic_write_bytes, atomic_write_text
from distil.teachers.base import TokenLogprob
from distil.teachers.journal import Entry

COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "id": (pa.string(), "stable sample id (from the request key)"),
    "prompt": (pa.string(), "the prompt (user message)"),
    "response": (pa.string(), "the teacher's response"),
    "prompt_id": (pa.string(), "hash of the prompt text (shared by a prompt's samples)"),
    "source": (pa.string(), "file, task:<family> or self_instruct"),
    "sample_index": (pa.int32(), "which sample of the prompt (0 .. samples_per_prompt-1)"),
    "teacher": (pa.string(), "teacher.model in the recipe"),
    "backend": (pa.string(), "api, local, or vllm <version> (a local teacher in vLLM)"),
    "endpoint": (pa.string(), "API root and endpoint (empty for a local teacher)"),
    "model": (pa.string(), "the model that answered, as the server named it"),
    "revision": (pa.string(), "model revision, when pinned"),
    "sampling": (pa.string(), "sampling parameters (JSON)"),
    "seed": (pa.int64(), "sampling seed of this request"),
    "prompt_tokens": (pa.int64(), "prompt tokens, as the teacher reported them"),
    "completion_tokens": (pa.int64(), "response tokens, as the teacher reported them"),
    "finish_reason": (pa.string(), "why generation ended (stop, length, ...)"),
    "attempts": (pa.int32(), "tries the request took (retries + 1)"),
    "requested_at": (pa.string(), "UTC time of the first try"),
    "completed_at": (pa.string(), "UTC time of the answer"),
    "toolkit_version": (pa.string(), "distil version that wrote the row"),
    "license": (pa.string(), "synth.license: terms the teacher's outputs come under"),
    "terms": (
        pa.string(),
        "teacher.terms (JSON): licence, whether outputs may train models, acknowledgement",
    ),
    "request_key": (pa.string(), "journal key: hash of endpoint, model, messages, sampling, seed"),
}
TOP = pa.struct([("token_id", pa.int64()), ("token", pa.string()), ("logprob", pa.float64())])
LOGPROBS = pa.list_(
    pa.struct(
        [("token_id", pa.int64()), ("token", pa.string()), ("logprob", pa.float64()), ("top", pa.list_(TOP))]
    )
)


def utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def response_row(
    entry: Entry, *, prompt: Any, sample_index: int, context: dict[str, Any], with_logprobs: bool
) -> dict[str, Any]:
    """A training row: the prompt, the response and where both came from."""
    completion = entry.completion
    assert completion is not None
    request = entry.request
    row = {
        "id": entry.key[:16],
        "prompt": prompt.text,
        "response": completion.text,
        "prompt_id": prompt.prompt_id,
        "source": prompt.source,
        "sample_index": sample_index,
        **context,
        "model": entry.served_model or request["model"],
        "sampling": json.dumps(request["sampling"], sort_keys=True),
        "seed": request["seed"],
        "prompt_tokens": completion.usage.prompt_tokens,
        "completion_tokens": completion.usage.completion_tokens,
        "finish_reason": completion.finish_reason,
        "attempts": entry.attempts,
        "requested_at": utc(entry.started),
        "completed_at": utc(entry.finished),
        "request_key": entry.key,
    }
    if with_logprobs:
        row["token_logprobs"] = logprob_rows(completion.logprobs)
    return row


def logprob_rows(logprobs: tuple[TokenLogprob, ...] | None) -> list[dict[str, Any]] | None:
    if logprobs is None:
        return None
    return [
        {
            "token_id": t.token_id,
            "token": t.token,
            "logprob": t.logprob,
            "top": [{"token_id": a.token_id, "token": a.token, "logprob": a.logprob} for a in t.top],
        }
        for t in logprobs
    ]


def reject_row(
    kind: str,
    reason: str,
    detail: str,
    *,
    prompt: Any = None,
    entry: Entry | None = None,
    sample_index: int | None = None,
) -> dict[str, Any]:
    """A dropped prompt, expansion or response, with its reason code and detail."""
    completion = entry.completion if entry is not None else None
    return {
        "id": entry.key[:16] if entry is not None else (prompt.prompt_id if prompt else None),
        "kind": kind,
        "reason": reason,
        "detail": detail,
        "prompt": prompt.text if prompt is not None else None,
        "prompt_id": prompt.prompt_id if prompt is not None else None,
        "source": prompt.source if prompt is not None else None,
        "sample_index": sample_index,
        "response": completion.text if completion is not None else None,
        "finish_reason": completion.finish_reason if completion is not None else None,
        "attempts": entry.attempts if entry is not None else None,
        "request_key": entry.key if entry is not None else None,
    }


def write_train(path: Path, rows: list[dict[str, Any]], with_logprobs: bool) -> None:
    """The training rows as Parquet, atomically, with a fixed schema (even when empty)."""
    fields = [pa.field(name, kind) for name, (kind, _) in COLUMNS.items()]
    if with_logprobs:
        fields.append(pa.field("token_logprobs", LOGPROBS))
    schema = pa.schema(fields)
    table = pa.Table.from_pylist(rows, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())  # the umask's mode, not mkstemp's 0600


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
