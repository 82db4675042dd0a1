"""The request journal: stable keys, crash-safe appends, torn lines, one writer at a time."""

import json

import pytest

from distil.teachers import Completion, TokenLogprob, TopLogprob, Usage
from distil.teachers.journal import Entry, Journal, JournalError, request_key

MESSAGES = [{"role": "user", "content": "Reverse: abc"}]
SAMPLING = {
    "max_new_tokens": 8,
    "temperature": 0.7,
    "top_p": 1.0,
    "stop": [],
    "logprobs": False,
    "top_logprobs": 2,
    "seed": 3,
}


def entry(key: str, ok: bool = True, attempts: int = 1, text: str = "cba") -> Entry:
    top = (TopLogprob(1, "c", -0.1), TopLogprob(None, "x", -2.0))
    completion = Completion(text, (1, 2, 3), "stop", Usage(5, 3), (TokenLogprob(1, "c", -0.1, top),))
    return Entry(
        key,
        "ok" if ok else "failed",
        {"endpoint": "e", "model": "m", "messages": MESSAGES, "sampling": SAMPLING, "seed": 3},
        attempts,
        1.0,
        2.0,
        completion if ok else None,
        "m-1" if ok else None,
        None if ok else "server error (500: x) (3 attempts)",
    )


def test_the_key_depends_on_everything_that_decides_the_answer():
    base = request_key("http://a/v1 (chat)", "m", MESSAGES, SAMPLING, 3)
    assert base == request_key("http://a/v1 (chat)", "m", [dict(MESSAGES[0])], dict(SAMPLING), 3)
    changed = [
        request_key("http://b/v1 (chat)", "m", MESSAGES, SAMPLING, 3),
        request_key("http://a/v1 (chat)", "m2", MESSAGES, SAMPLING, 3),
        request_key("http://a/v1 (chat)", "m", [{"role": "user", "content": "x"}], SAMPLING, 3),
        request_key("http://a/v1 (chat)", "m", MESSAGES, {**SAMPLING, "temperature": 1.0}, 3),
        request_key("http://a/v1 (chat)", "m", MESSAGES, SAMPLING, 4),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_entries_survive_a_reopen_and_the_newest_wins(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path) as journal:
        journal.append(entry("a", ok=False, attempts=3))
        journal.append(entry("b"))
        assert not journal.done("a") and journal.done("b") and not journal.done("c")
    with Journal.open(path) as journal:
        assert journal.get("a").error.startswith("server error") and journal.get("b") == entry("b")
        journal.append(entry("a", attempts=2))
    with Journal.open(path) as journal:
        assert journal.done("a") and len(journal.entries) == 2
        # budget totals count every journaled attempt, failed ones included
        assert journal.spent.requests == 3 + 1 + 2
        assert journal.spent.prompt_tokens == 10 and journal.spent.completion_tokens == 6
    assert len(path.read_text().splitlines()) == 3


def test_attempts_recorded_before_sending_count_once_across_reopens(tmp_path):
    from dataclasses import replace

    path = tmp_path / "j.jsonl"
    with Journal.open(path) as journal:
        journal.record_attempt("probe")
        for _ in range(2):  # two attempts of "a": the first failed, the second answered
            journal.record_attempt("a")
        journal.append(replace(entry("a", attempts=2), attempts_recorded=True))
        journal.record_attempt("b")  # sent, then the run was stopped: no entry
        assert journal.spent.requests == 4
    with Journal.open(path) as journal:
        assert journal.spent.requests == 4 and list(journal.entries) == ["a"]
        journal.append(entry("c", attempts=2))  # a teacher without a ledger: its own count
    assert Journal.read(path)[1].requests == 6


def test_a_torn_last_line_is_cut_and_the_rest_kept(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path) as journal:
        journal.append(entry("a"))
    whole = path.read_bytes()
    path.write_bytes(whole + json.dumps(entry("b").to_json()).encode()[:40])  # killed mid-write
    assert list(Journal.read(path)[0]) == ["a"]  # a dry run reads around it, repairing nothing
    with Journal.open(path) as journal:
        assert list(journal.entries) == ["a"]
        journal.append(entry("b"))
    assert path.read_bytes().startswith(whole) and len(path.read_text().splitlines()) == 2
    with Journal.open(path) as journal:
        assert journal.done("a") and journal.done("b")


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    lines = [json.dumps(entry("a").to_json()), "{not json", json.dumps(entry("b").to_json())]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalError, match="line 2 is unreadable"):
        Journal.open(path)


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path), pytest.raises(JournalError, match="in use by another distil run"):
        Journal.open(path)
    with Journal.open(path) as journal:  # the lock went with the first journal
        assert journal.entries == {}


def test_a_rejected_request_is_not_sent_again_unless_asked(tmp_path):
    from dataclasses import replace

    from distil.teachers.journal import needs_sending

    path = tmp_path / "j.jsonl"
    with Journal.open(path) as journal:
        journal.append(
            replace(
                entry("a", ok=False),
                status="rejected",
                error="rejected by the server (400: prompt is too long)",
            )
        )
        journal.append(entry("b", ok=False))
        journal.append(entry("c"))
    with Journal.open(path) as journal:
        a, b, c = (journal.get(k) for k in "abc")
        assert a.rejected and not a.ok and not b.rejected
        assert [needs_sending(e) for e in (a, b, c, None)] == [False, True, False, True]
        assert [needs_sending(e, resend_rejected=True) for e in (a, b, c)] == [True, True, False]
