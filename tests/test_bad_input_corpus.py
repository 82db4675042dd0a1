"""Bad input across the command line, as a table: every case exits 2 with exactly one line
`error: ...` naming the problem, no traceback, and leaves every file as it was.

Cases run in-process (tests/cli_helpers.py), so the whole table costs seconds, not a
subprocess's imports per case; test_cli.py runs a few of the same through the real binary.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    "non-UTF-8 recipe": Case(lambda t: [recipe(t, "name: caf\xe9\n".encode("latin-1"))],
                             "is not UTF-8 text (byte 0xe9"),
    "unknown key": Case(lambda t: [recipe(t, {**recipe_dict(t, dataset(t)), "traine": {}})],
                        "unknown key traine (did you mean train?)"),
    "unknown nested key": Case(lambda t: [recipe(t, train={"max_stepz": 3})],
                               "unknown key train.max_stepz (did you mean max_steps?)"),
    "wrong type": Case(lambda t: [recipe(t, train={"max_steps": "many"})], "train.max_steps"),
    "negative steps": Case(lambda t: [recipe(t, train={"max_steps": -5})], "train.max_steps"),
    "unknown divergence": Case(lambda t: [recipe(t, distill={"divergence": "kl_magic"})],
                               "distill.divergence"),
    "missing section": Case(lambda t: [recipe(t, {k: v for k, v in recipe_dict(
        t, dataset(t)).items() if k != "teacher"})], "teacher is required"),
    "override without =": Case(lambda t: [recipe(t), "train.max_steps"],
                               "is not of the form key.sub=value"),
    "override into a value": Case(lambda t: [recipe(t), "train.max_steps.x=1"],
                                  "train.max_steps is a value, not a section"),
    "override of unknown key": Case(lambda t: [recipe(t), "train.max_stepz=3"],
                                    "unknown key train.max_stepz"),
    "recipe check, wrong type": Case(lambda t: [recipe(t), "eval.batch_size=lots"],
                                     "eval.batch_size", command="recipe check"),
    # --- datasets ---
    "missing dataset": Case(with_data(lambda t: t / "none.jsonl"), "dataset not found"),
    "missing eval dataset": Case(lambda t: [recipe(t), f"data.eval={t / 'held.jsonl'}"],
                                 "dataset not found"),
    "non-UTF-8 dataset": Case(with_data(data_file("d.jsonl", rows().encode() + LATIN1_ROW)),
                              "line 9 is not UTF-8 text"),
    "bad JSON line": Case(with_data(data_file("d.jsonl", rows() + "{oops\n")),
                          "line 9 is not valid JSON"),
    "JSON list line": Case(with_data(data_file("d.jsonl", "[1, 2]\n")), "line 1 holds a list"),
    "missing response field": Case(with_data(data_file("d.jsonl", rows(None, {"prompt": "p",
                                   "response": "r"}, None))),
                                   "2 of 8 rows have no 'response' (first: line 1)"),
    "non-string response": Case(with_data(data_file("d.jsonl", rows({"prompt": "p", "response": 50}))),
                                "line 1: 'response' is a number (50), not a string"),
    "no prompt column": Case(with_data(data_file("d.jsonl", '{"question": "a", "answer": "b"}\n')),
                             "no column 'prompt', 'response'"),
    "empty dataset": Case(with_data(data_file("d.jsonl", "")), "is empty (no rows)"),
    "unknown extension": Case(with_data(data_file("d.csv", "prompt,response\na,b\n")),
                              "unsupported dataset format '.csv'"),
    "corrupt parquet": Case(with_data(data_file("d.parquet", "not parquet")),
                            "not a readable Parquet file"),
    "folder without parquet": Case(with_data(parquet_folder), "folder without .parquet files"),
    "parquet without response": Case(with_data(lambda t: (pq.write_table(
        pa.Table.from_pylist([{"prompt": "a"}]), t / "d.parquet"), t / "d.parquet")[1]),
        "no column 'response'"),
    # --- models ---
    "teacher folder missing": Case(lambda t: [recipe(t, teacher={"model": str(t / "no-model")})],
                                   "model folder not found"),
    "student folder missing": Case(lambda t: [recipe(t, student={"model": str(t / "no-model")})],
                                   "model folder not found"),
    "model folder without config": Case(lambda t: [recipe(t, teacher={
        "model": model_folder_without_config(t)})], "holds no config.json"),
    "eval before training": Case(lambda t: [recipe(t)], "no trained student in", command="eval"),
    # --- output folders ---
    "--out is a file": Case(lambda t: [recipe(t), "--out", str(a_file(t))],
                            "is a file, not a folder"),
    "--out under a file": Case(lambda t: [recipe(t), "--out", str(a_file(t) / "run")],
                               "(Not a directory)"),
    "run --out under a file": Case(lambda t: [recipe(t), "--out", str(a_file(t) / "run")],
                                   "(Not a directory)", command="run"),
    "eval --output is a folder": Case(lambda t: [recipe(t), "--student", "recipe", "--output",
                                                 str(t)], "is a folder, not a file", command="eval"),
    "export --out is a file": Case(lambda t: [config_only(t), "--out", str(a_file(t))],
                                   "taken is a file; pass --out a folder", command="export"),
    "export --out holds other files": Case(lambda t: [config_only(t), "--out", not_a_model(t)],
                                           "already holds files that are not an export",
                                           command="export"),
    "export source not a model": Case(lambda t: [not_a_model(t)], "is neither a run folder",
                                      command="export"),
    # --- launches ---
    "missing accelerate config": Case(lambda t: [recipe(t), "--accelerate-config",
                                                 str(t / "none.yaml")],
                                      "accelerate config"),
    "unreadable accelerate config": Case(lambda t: [recipe(t), "--accelerate-config",
                                                    accelerate_config(t, "distributed_type: [\n")],
                                         "cannot be read", command="run"),
    **({} if torch.cuda.is_available() else {
        "FSDP without a GPU": Case(lambda t: [recipe(t), "--num-processes", "2",
                                              "--accelerate-config", str(FSDP2)],
                                   "asks for FSDP, which accelerate runs on GPUs only"),
        "DeepSpeed without a GPU": Case(lambda t: [recipe(t), "--accelerate-config",
                                                   accelerate_config(t, "distributed_type: "
                                                                        "DEEPSPEED\n")],
                                        "asks for DeepSpeed, which accelerate runs on GPUs only",
                                        command="run")}),
    "export bad dtype": Case(lambda t: [not_a_model(t), "--dtype", "fp8"], "bad export option: dtype",
                             command="export"),
}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, name):
    case = CASES[name]
    args = case.args(tmp_path)
    before = _snapshot(tmp_path)
    result = run_cli(monkeypatch, capsys, *case.command.split(), *args, *case.extra)
    assert_one_error_line(result, case.message)
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "run").exists()


def test_the_corpus_is_broad():
    assert len(CASES) >= 25
    assert {case.command for case in CASES.values()} >= {"train", "eval", "run", "export",
                                                          "recipe check"}
