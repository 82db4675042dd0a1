"""Datasets that are not quite right: each problem is a DataError naming the file, the line
and the fix; no row is dropped without a word, no pyarrow or codec error escapes."""

import json

import pytest

from distil.data import load_pairs, read_table
from distil.errors import DataError
from tests.conftest import skill_rows, write_jsonl


def _lines(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_non_utf8_file_names_the_line_and_encoding(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"prompt": "a", "response": "b"}).encode() + b"\n"
    path.write_bytes(good + '{"prompt": "caf\u00e9", "response": "x"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"d.jsonl line 2 is not UTF-8 text.*save the file as UTF-8"):
        load_pairs(path)
    with pytest.raises(DataError, match="line 2 is not UTF-8"):
        read_table(path)


def test_a_number_as_response_names_the_line(tmp_path):
    rows = skill_rows(6)
    rows[3]["response"] = 50
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=r"line 4: 'response' is a number \(50\), not a string"):
        load_pairs(path)
    with pytest.raises(DataError, match=r"line 4: 'response' holds a number, but line 1 holds a string"):
        read_table(path)


def test_columns_come_from_every_row_not_the_first(tmp_path):
    rows = [{"prompt": "p0"}, *skill_rows(3)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert read_table(path).column("response").to_pylist()[1:] == [r["response"] for r in rows[1:]]
    with pytest.raises(DataError, match=r"1 of 4 rows have no 'response' \(first: line 1\)"):
        load_pairs(path)


def test_rows_without_response_are_an_error_not_dropped(tmp_path):
    rows = skill_rows(240)
    for row in rows[1::2]:
        del row["response"]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=r"120 of 240 rows have no 'response' \(first: line 2\)"):
        load_pairs(path)


def test_null_prompt_and_non_string_prompt(tmp_path):
    path = _lines(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": None, "response": "c"}])
    with pytest.raises(DataError, match=r"1 of 2 rows have no 'prompt' \(first: line 2\)"):
        load_pairs(path)
    path = _lines(tmp_path / "e.jsonl", [{"prompt": ["a"], "response": "b"}])
    with pytest.raises(DataError, match=r"line 1: 'prompt' is a list"):
        load_pairs(path)


def test_blank_lines_and_a_byte_order_mark_are_fine(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + b'{"prompt": "a", "response": "b"}\n\n  \n' + b'{"prompt": "c", "response": "d"}\n'
    )
    assert [(p.prompt, p.response) for p in load_pairs(path)] == [("a", "b"), ("c", "d")]


def test_bad_json_names_its_line_number_past_blank_lines(tmp_path):
    path = _lines(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"}, "", "{oops"])
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        load_pairs(path)
