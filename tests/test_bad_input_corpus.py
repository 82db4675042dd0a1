"""Bad input across the command line, as a table: every case exits 2 with exactly one line
`error: ...` naming the problem, no traceback, and leaves every file as it was.

Cases run in-process (tests/cli_helpers.py), so the whole table costs seconds, not a
subprocess's imports per case; test_cli.py runs a few of the same through the real binary.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from tests.cli_helpers import assert_one_error_line, run_cli
from tests.conftest import recipe_dict, skill_rows, write_jsonl


@dataclass(frozen=True)
class Case:
    """A command line built in a fresh folder, and what its one error line must say."""

    args: Callable[[Path], list[str]]
    message: str
    command: str = "train"
    extra: tuple[str, ...] = field(default=())
    env: tuple[tuple[str, str], ...] = (("DISTIL_WATERMARK_KEY", "a-key"),)
    """Environment variables set for the case."""
    absent: str | None = None
    """Text the error line must not hold (an option the command lacks, a recipe field)."""


def recipe(tmp: Path, content: dict | str | bytes | None = None, **sections) -> str:
    """A recipe file: `content` as YAML text/bytes, or the test recipe with `sections` merged."""
    path = tmp / "recipe.yaml"
    if content is None:
        content = yaml.safe_dump(recipe_dict(tmp, dataset(tmp), **sections))
    elif isinstance(content, dict):
        content = yaml.safe_dump(content)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def dataset(tmp: Path) -> Path:
    path = tmp / "data.jsonl"
    return path if path.exists() else write_jsonl(path, skill_rows(24))


def with_data(make_data: Callable[[Path], Path], **sections) -> Callable[[Path], list[str]]:
    """A case whose data.train is the file `make_data` writes."""

    def args(tmp: Path) -> list[str]:
        return [recipe(tmp, recipe_dict(tmp, make_data(tmp), **sections))]

    return args


def streamed(make_data: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    """A case whose data.train is the file `make_data` writes, read with data.streaming."""
    return lambda tmp: [*with_data(make_data)(tmp), "data.streaming=true"]


def data_file(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return make


def rows(*edits: dict | None) -> str:
    """JSONL of the test rows, row i replaced by edits[i] (None: deleted key 'response')."""
    import json

    lines = []
    for i, row in enumerate(skill_rows(8)):
        if i < len(edits) and edits[i] is not None:
            row = edits[i]
        elif i < len(edits):
            row = {"prompt": row["prompt"]}
        lines.append(json.dumps(row))
    return "\n".join(lines) + "\n"


def parquet_folder(tmp: Path) -> Path:
    (tmp / "shards").mkdir()
    (tmp / "shards" / "notes.txt").write_text("no parquet here")
    return tmp / "shards"


def model_folder_without_config(tmp: Path) -> str:
    (tmp / "weights").mkdir()
    (tmp / "weights" / "model.safetensors").write_bytes(b"\0" * 16)
    return str(tmp / "weights")


def store_of_version(version: int) -> Callable[[Path], list[str]]:
    """A recipe that trains from a signal store whose fingerprint says format `version`."""

    def args(tmp: Path) -> list[str]:
        import json
        import shutil

        store = tmp / "store"
        shutil.copytree(Path(__file__).parent / "signals" / "data" / "store-v1", store)
        fingerprint = json.loads((store / "fingerprint.json").read_text())
        (store / "fingerprint.json").write_text(json.dumps({**fingerprint, "format_version": version}))
        return [recipe(tmp, signals={"path": str(store)})]

    return args


def a_file(tmp: Path) -> Path:
    (tmp / "taken").write_text("mine")
    return tmp / "taken"


def config_only(tmp: Path) -> str:
    """A folder that looks like a model until its weights are read (none are)."""
    (tmp / "model").mkdir()
    (tmp / "model" / "config.json").write_text("{}")
    return str(tmp / "model")


def not_a_model(tmp: Path) -> str:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "readme.txt").write_text("not a model")
    return str(tmp / "notes")


TOOL_CHAT = (
    '{"messages": [{"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", '
    '"content": null, "tool_calls": [{"type": "function", "function": {"name": "get_weather", '
    '"arguments": "{}"}}]}, {"role": "tool", "content": "snow"}, {"role": "assistant", '
    '"content": "Snow."}]}\n'
)


def api_teacher(tmp: Path) -> dict:
    """The test recipe with a teacher behind an API (nothing listens there)."""
    return {
        **recipe_dict(tmp, dataset(tmp)),
        "teacher": {"model": "m", "api": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}},
    }


def text_file(tmp: Path) -> str:
    (tmp / "good.txt").write_text("a few words of text for the audit to read and score\n")
    return str(tmp / "good.txt")


def audit_text(*options: str) -> Callable[[Path], list[str]]:
    """`distil audit text good.txt OPTIONS --out TMP/audit`."""
    return lambda t: [text_file(t), *options, "--out", str(t / "audit")]


NO_SERVER = "http://127.0.0.1:9/v1"
"""A URL nothing listens on: a case that sent a request would fail otherwise."""


def audit_api(*options: str) -> Callable[[Path], list[str]]:
    """`distil audit api NO_SERVER --model demo OPTIONS --out TMP/audit`."""
    return lambda t: [NO_SERVER, "--model", "demo", *options, "--out", str(t / "audit")]


def prompts_without_prompt(tmp: Path) -> str:
    (tmp / "prompts.jsonl").write_text('{"question": "What is 2 + 2?"}\n')
    return str(tmp / "prompts.jsonl")


def gguf_model(architecture: str, dtype: type = np.float32) -> Callable[[Path], str]:
    """A GGUF file holding one embedding matrix of `dtype`, written by the gguf package."""

    def make(tmp: Path) -> str:
        import gguf

        path = tmp / f"{architecture}-{np.dtype(dtype).name}.gguf"
        writer = gguf.GGUFWriter(str(path), architecture)
        writer.add_tensor("token_embd.weight", np.ones((8, 4), dtype=dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return str(path)

    return make


def teacher_file(make: Callable[[Path], str]) -> Callable[[Path], list[str]]:
    return lambda t: [recipe(t, teacher={"model": make(t)})]


def not_gguf(tmp: Path) -> str:
    (tmp / "model.gguf").write_bytes(b"not a GGUF file at all")
    return str(tmp / "model.gguf")


def accelerate_config(tmp: Path, text: str) -> str:
    (tmp / "engine.yaml").write_text(text)
    return str(tmp / "engine.yaml")


FSDP2 = Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "fsdp2.yaml"

LATIN1_ROW = '{"prompt": "caf\xe9", "response": "x"}\n'.encode("latin-1")

CASES: dict[str, Case] = {
    # --- recipe files ---
    "missing recipe": Case(lambda t: [str(t / "nope.yaml")], "recipe file not found"),
    "recipe is a folder": Case(lambda t: [str(t)], "recipe file not found"),
    "empty recipe": Case(lambda t: [recipe(t, "")], "not nothing (the file is empty)"),
    "list recipe": Case(lambda t: [recipe(t, "- teacher\n- student\n")], "data:, ...), not a list"),
    "scalar recipe": Case(lambda t: [recipe(t, "just words\n")], "not a str"),
    "invalid yaml": Case(lambda t: [recipe(t, "teacher: {model: [x\n")], "is not valid YAML at line"),
    "non-UTF-8 recipe": Case(
        lambda t: [recipe(t, "name: caf\xe9\n".encode("latin-1"))], "is not UTF-8 text (byte 0xe9"
    ),
    "unknown key": Case(
        lambda t: [recipe(t, {**recipe_dict(t, dataset(t)), "traine": {}})],
        "unknown key traine (did you mean train?)",
    ),
    "unknown nested key": Case(
        lambda t: [recipe(t, train={"max_stepz": 3})], "unknown key train.max_stepz (did you mean max_steps?)"
    ),
    "wrong type": Case(lambda t: [recipe(t, train={"max_steps": "many"})], "train.max_steps"),
    "negative steps": Case(lambda t: [recipe(t, train={"max_steps": -5})], "train.max_steps"),
    "unknown divergence": Case(
        lambda t: [recipe(t, distill={"divergence": "kl_magic"})], "distill.divergence"
    ),
    "missing section": Case(
        lambda t: [recipe(t, {k: v for k, v in recipe_dict(t, dataset(t)).items() if k != "teacher"})],
        "teacher is required",
    ),
    "override without =": Case(lambda t: [recipe(t), "train.max_steps"], "is not of the form key.sub=value"),
    "override into a value": Case(
        lambda t: [recipe(t), "train.max_steps.x=1"], "train.max_steps is a value, not a section"
    ),
    "override of unknown key": Case(
        lambda t: [recipe(t), "train.max_stepz=3"], "unknown key train.max_stepz"
    ),
    "recipe check, wrong type": Case(
        lambda t: [recipe(t), "eval.batch_size=lots"], "eval.batch_size", command="recipe check"
    ),
    # --- datasets ---
    "missing dataset": Case(with_data(lambda t: t / "none.jsonl"), "dataset not found"),
    "missing eval dataset": Case(lambda t: [recipe(t), f"data.eval={t / 'held.jsonl'}"], "dataset not found"),
    "non-UTF-8 dataset": Case(
        with_data(data_file("d.jsonl", rows().encode() + LATIN1_ROW)), "line 9 is not UTF-8 text"
    ),
    "bad JSON line": Case(with_data(data_file("d.jsonl", rows() + "{oops\n")), "line 9 is not valid JSON"),
    "JSON list line": Case(with_data(data_file("d.jsonl", "[1, 2]\n")), "line 1 holds a list"),
    "missing response field": Case(
        with_data(data_file("d.jsonl", rows(None, {"prompt": "p", "response": "r"}, None))),
        "2 of 8 rows have no 'response' (first: line 1)",
    ),
    "non-string response": Case(
        with_data(data_file("d.jsonl", rows({"prompt": "p", "response": 50}))),
        "line 1: 'response' is a number (50), not a string",
    ),
    "no prompt column": Case(
        with_data(data_file("d.jsonl", '{"question": "a", "answer": "b"}\n')),
        "no column 'prompt', 'response'",
    ),
    "empty dataset": Case(with_data(data_file("d.jsonl", "")), "is empty (no rows)"),
    "unknown extension": Case(
        with_data(data_file("d.csv", "prompt,response\na,b\n")), "unsupported dataset format '.csv'"
    ),
    "corrupt parquet": Case(with_data(data_file("d.parquet", "not parquet")), "not a readable Parquet file"),
    "folder without parquet": Case(with_data(parquet_folder), "folder without .parquet files"),
    "streamed: a JSON array": Case(
        streamed(data_file("d.json", '[{"prompt": "a", "response": "b"}]')),
        "data.streaming reads .jsonl (or JSON lines) and .parquet",
    ),
    "streamed from a signal store": Case(
        lambda t: [recipe(t), "data.streaming=true", "signals.path=signals"],
        "signals.path (a store is checked against every row first) needs them all in memory",
    ),
    "a model held by another process": Case(
        lambda t: [recipe(t, teacher={"model": "memory:model-0123456789abcdef"})],
        "memory:model-0123456789abcdef names an object passed in memory to distil.Distiller",
    ),
    "a dataset held by another process": Case(
        lambda t: [recipe(t), "data.train=memory:dataset-0123456789abcdef"],
        "memory:dataset-0123456789abcdef names an object passed in memory",
    ),
    "tool calls the template cannot render": Case(
        with_data(data_file("d.jsonl", TOOL_CHAT)),
        "d.jsonl line 1: message 2, an assistant turn, calls tools (get_weather), but the chat "
        "template does not render the calls",
    ),
    "tool calls without a chat template": Case(
        lambda t: [*with_data(data_file("d.jsonl", TOOL_CHAT))(t), "data.template=plain"],
        "the row uses tools, which only a chat template can render",
    ),
    "tools not a list": Case(
        with_data(
            data_file(
                "d.jsonl",
                '{"messages": [{"role": "user", "content": "a"}, {"role": '
                '"assistant", "content": "b"}], "tools": "get_weather"}\n',
            )
        ),
        "d.jsonl line 1: 'tools' is not a list of function schemas",
    ),
    "tool_calls on a user turn": Case(
        with_data(
            data_file(
                "d.jsonl",
                '{"messages": [{"role": "user", "content": "a", "tool_calls": '
                '[{"function": {"name": "f"}}]}, {"role": "assistant", '
                '"content": "b"}]}\n',
            )
        ),
        "message 1 has tool_calls that are not an assistant's list",
    ),
    "API teacher, live-logit KD": Case(
        lambda t: [recipe(t, api_teacher(t))], "a teacher behind an API gives no full logits", command="run"
    ),
    "parquet without response": Case(
        with_data(
            lambda t: (
                pq.write_table(pa.Table.from_pylist([{"prompt": "a"}]), t / "d.parquet"),
                t / "d.parquet",
            )[1]
        ),
        "no column 'response'",
    ),
    # --- models ---
    "signal store of a newer format version": Case(
        store_of_version(3), "uses signal format version 3, this distil reads versions 1, 2"
    ),
    "teacher folder missing": Case(
        lambda t: [recipe(t, teacher={"model": str(t / "no-model")})], "model folder not found"
    ),
    "student folder missing": Case(
        lambda t: [recipe(t, student={"model": str(t / "no-model")})], "model folder not found"
    ),
    "model folder without config": Case(
        lambda t: [recipe(t, teacher={"model": model_folder_without_config(t)})], "holds no config.json"
    ),
    "teacher GGUF missing": Case(
        lambda t: [recipe(t, teacher={"model": str(t / "none.gguf")})], "GGUF file not found"
    ),
    "student GGUF missing": Case(
        lambda t: [recipe(t, student={"model": str(t / "none.gguf")})], "GGUF file not found"
    ),
    "corrupt GGUF": Case(teacher_file(not_gguf), "is not a readable GGUF file"),
    "GGUF of an unsupported architecture": Case(
        teacher_file(gguf_model("bert")), "supported architectures: "
    ),
    "GGUF of an unsupported tensor type": Case(
        teacher_file(gguf_model("llama", np.float64)),
        "stores tensors as F64, which transformers cannot dequantise; supported types: F32, F16",
    ),
    "eval before training": Case(lambda t: [recipe(t)], "no trained student in", command="eval"),
    # --- output folders ---
    "--out is a file": Case(lambda t: [recipe(t), "--out", str(a_file(t))], "is a file, not a folder"),
    "--out under a file": Case(lambda t: [recipe(t), "--out", str(a_file(t) / "run")], "(Not a directory)"),
    "run --out under a file": Case(
        lambda t: [recipe(t), "--out", str(a_file(t) / "run")], "(Not a directory)", command="run"
    ),
    "eval --output is a folder": Case(
        lambda t: [recipe(t), "--student", "recipe", "--output", str(t)],
        "is a folder, not a file",
        command="eval",
    ),
    "export --out is a file": Case(
        lambda t: [config_only(t), "--out", str(a_file(t))],
        "taken is a file; pass --out a folder",
        command="export",
    ),
    "export --out holds other files": Case(
        lambda t: [config_only(t), "--out", not_a_model(t)],
        "already holds files that are not an export",
        command="export",
    ),
    "export source not a model": Case(
        lambda t: [not_a_model(t)], "is neither a run folder", command="export"
    ),
    # --- launches ---
    "missing accelerate config": Case(
        lambda t: [recipe(t), "--accelerate-config", str(t / "none.yaml")], "accelerate config"
    ),
    "unreadable accelerate config": Case(
        lambda t: [recipe(t), "--accelerate-config", accelerate_config(t, "distributed_type: [\n")],
        "cannot be read",
        command="run",
    ),
    **(
        {}
        if torch.cuda.is_available()
        else {
            "FSDP without a GPU": Case(
                lambda t: [recipe(t), "--num-processes", "2", "--accelerate-config", str(FSDP2)],
                "asks for FSDP, which accelerate runs on GPUs only",
            ),
            "DeepSpeed without a GPU": Case(
                lambda t: [
                    recipe(t),
                    "--accelerate-config",
                    accelerate_config(t, "distributed_type: DEEPSPEED\n"),
                ],
                "asks for DeepSpeed, which accelerate runs on GPUs only",
                command="run",
            ),
        }
    ),
    "export bad dtype": Case(
        lambda t: [not_a_model(t), "--dtype", "fp8"], "bad export option: dtype", command="export"
    ),
    "export a recipe file": Case(
        lambda t: [recipe(t)],
        "recipe.yaml is a file, not a run folder or a model folder (a recipe: `distil run",
        command="export",
    ),
    # --- audit: options out of range are refused before any file, model or request ---
    "audit alpha over 1": Case(
        audit_text("--alpha", "2"), "--alpha: Input should be less than 1", command="audit text"
    ),
    "audit alpha 0": Case(
        audit_text("--alpha", "0"), "--alpha: Input should be greater than 0", command="audit text"
    ),
    "audit gamma 1": Case(
        audit_text("--gamma", "1"), "--gamma: Input should be less than 1", command="audit text"
    ),
    "audit context width 0": Case(
        audit_text("--context-width", "0"),
        "--context-width: Input should be greater than or equal to 1",
        command="audit text",
    ),
    "audit negative null keys": Case(
        audit_text("--null-keys", "-1"),
        "--null-keys: Input should be greater than or equal to 0",
        command="audit text",
    ),
    "audit negative seed": Case(
        audit_text("--seed", "-1"), "--seed: Input should be greater than or equal to 0", command="audit text"
    ),
    "audit unknown scheme": Case(
        audit_text("--scheme", "gumbel"), "--scheme: Input should be 'kgw' or 'exp-min'", command="audit text"
    ),
    "audit empty key variable name": Case(
        audit_text("--key-env", ""), "--key-env: must name an environment variable", command="audit text"
    ),
    "audit key variable unset": Case(
        audit_text("--key-env", "NO_SUCH_KEY_VARIABLE"),
        "NO_SUCH_KEY_VARIABLE is not set",
        command="audit text",
    ),
    "audit corrupt parquet": Case(
        lambda t: [str(data_file("bad.parquet", b"PAR1garbage")(t)), "--out", str(t / "audit")],
        "bad.parquet is not a readable Parquet file",
        command="audit text",
    ),
    "audit model top-k 0": Case(
        lambda t: ["demo", "--top-k", "0", "--out", str(t / "audit")],
        "--top-k: Input should be greater than or equal to 1",
        command="audit model",
    ),
    "audit model tasks 0": Case(
        lambda t: ["demo", "--tasks", "0", "--out", str(t / "audit")],
        "--tasks: Input should be greater than or equal to 1",
        command="audit model",
    ),
    "audit api max tokens 0": Case(
        audit_api("--max-tokens", "0"),
        "--max-tokens: Input should be greater than or equal to 1",
        command="audit api",
    ),
    "audit api negative temperature": Case(
        audit_api("--temperature", "-1"),
        "--temperature: Input should be greater than or equal to 0",
        command="audit api",
    ),
    "audit api not a URL": Case(
        lambda t: ["not a url", "--model", "demo"],
        "URL: must start with http:// or https://",
        command="audit api",
    ),
    "audit api key variable unset": Case(
        audit_api("--api-key-env", "NO_SUCH_API_KEY"),
        "NO_SUCH_API_KEY is not set; export NO_SUCH_API_KEY=",
        command="audit api",
        absent="teacher.api",
    ),
    "audit api prompts without a prompt": Case(
        lambda t: [*audit_api()(t), "--prompts", prompts_without_prompt(t)],
        "row 1 has no prompt field; each row of the prompts file needs one",
        command="audit api",
        absent="--field",
    ),
    # --- serve: refused before the model loads ---
    "serve port out of range": Case(
        lambda t: ["demo", "--port", "70000"],
        "--port: Input should be less than or equal to 65535",
        command="serve",
    ),
    "serve watermark gamma 0": Case(
        lambda t: ["demo", "--watermark-gamma", "0", "--port", "0"],
        "--watermark-gamma: Input should be greater than 0",
        command="serve",
    ),
    "serve empty watermark key variable": Case(
        lambda t: ["demo", "--watermark", "--port", "0", "--watermark-key-env", ""],
        "--watermark-key-env: must name an environment variable",
        command="serve",
    ),
}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, name):
    case = CASES[name]
    for variable, value in case.env:
        monkeypatch.setenv(variable, value)
    args = case.args(tmp_path)
    before = _snapshot(tmp_path)
    result = run_cli(monkeypatch, capsys, *case.command.split(), *args, *case.extra)
    line = assert_one_error_line(result, case.message)
    assert case.absent is None or case.absent not in line
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "run").exists()


def test_the_corpus_is_broad():
    assert len(CASES) >= 25
    assert {case.command for case in CASES.values()} >= {
        "train",
        "eval",
        "run",
        "export",
        "recipe check",
        "audit text",
        "audit model",
        "audit api",
        "serve",
    }
