"""End to end over loopback: `distil serve` with the tiny teacher, the official openai client,
the fault proxy, SIGKILL and rerun, and bad input against a real server.

Every server listens on 127.0.0.1; nothing leaves the machine.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from distil.recipe import validate_recipe
from distil.server.testing import running_fault_proxy, running_server, serve_process
from distil.synth.stage import run_synth
from distil.teachers import LocalTeacher, Sampling
from tests.synth.conftest import journal_lines, outputs, synth_recipe
from tests.synth.test_cli_synth import in_process, one_line_error, write

KEY_ENV = "DISTIL_E2E_TEACHER_KEY"


def api_recipe(tmp_path, seed_file, base_url: str, api=None, **synth) -> dict:
    raw = synth_recipe(tmp_path, seed_file, **synth)
    raw["teacher"] = {
        "model": "tiny-teacher",
        "api": {
            "base_url": base_url,
            "api_key_env": None,
            "concurrency": 4,
            "backoff_s": 0.05,
            "backoff_max_s": 0.2,
            "timeout_s": 30,
            "tokenizer": "tiny-teacher",
            **(api or {}),
        },
    }
    raw["distill"] = {"kd_weight": 0.0, "ce_weight": 1.0}
    return raw


@pytest.fixture(scope="module")
def teacher() -> LocalTeacher:
    return LocalTeacher.load("tiny-teacher", device="cpu")


@pytest.fixture(scope="module")
def server(teacher):
    with running_server(teacher, admin=True, batch_wait_ms=2) as running:
        yield running


def test_distil_serve_drives_synth_and_a_whole_run(tmp_path, seed_file, teacher):
    """`distil serve` in its own process; synth through the openai client; train; eval."""
    with serve_process("tiny-teacher", "--admin", api_key="e2e-key") as served:
        raw = api_recipe(
            tmp_path,
            seed_file,
            served.base_url,
            api={"api_key_env": KEY_ENV},
            prompts={"tasks": ["all"], "per_task": 6},
            sampling={"max_new_tokens": 8, "temperature": 0.0, "top_logprobs": 3},
        )
        os.environ[KEY_ENV] = "e2e-key"
        try:
            from distil.pipeline import run_pipeline

            run_pipeline(validate_recipe(raw))
        finally:
            del os.environ[KEY_ENV]
        stats = served.stats()
    run = tmp_path / "run"
    rows, rejects, summary = outputs(run)
    assert len(rows) == summary["responses"]["requested"] and rows[0]["backend"] == "api"
    assert all((run / "stages" / f"{s}.json").is_file() for s in ("synth", "train", "eval"))
    assert (run / "student").is_dir() and (run / "eval.json").is_file()
    # the served teacher answers exactly as the same model in process (greedy)
    local = teacher.generate([r["prompt"] for r in rows[:4]], Sampling(max_new_tokens=8, top_logprobs=3))
    for row, expected in zip(rows, local, strict=False):
        ended = expected.usage.completion_tokens > len(expected.token_ids)  # the server sends
        end = [teacher.tokenizer.eos_token_id] * ended  # the end token too
        assert [t["token_id"] for t in row["token_logprobs"]] == [*expected.token_ids, *end]
        assert row["token_logprobs"][0]["logprob"] == pytest.approx(expected.logprobs[0].logprob, abs=1e-4)
        assert len(row["token_logprobs"][0]["top"]) == 3
    assert any("sends the token ids" in note for note in summary["teacher"]["notes"])
    paid = {k: n for k, n in stats["completed_by_key"].items() if not k.startswith("sha256:")}
    assert sorted(paid) == sorted(line["key"] for line in journal_lines(run)) and set(paid.values()) == {1}


def test_faults_through_the_proxy_leave_every_row_accounted_for(tmp_path, seed_file, server):
    rates = {"rate_limit": 0.12, "server_error": 0.1, "timeout": 0.05, "malformed": 0.1, "drop": 0.1}
    with running_fault_proxy(server.url, seed=3, delay_s=1.5, retry_after_s=0.05, **rates) as proxy:
        raw = api_recipe(
            tmp_path,
            seed_file,
            proxy.base_url,
            api={"timeout_s": 0.8, "max_retries": 4},
            prompts={"tasks": ["all"], "per_task": 16},
            sampling={"max_new_tokens": 6, "temperature": 0.0},
            max_failed_fraction=1.0,
        )  # failures are what this test looks at
        run_synth(validate_recipe(raw))
        faults = proxy.stats()["faults"]
    rows, rejects, summary = outputs(tmp_path / "run")
    requested = summary["responses"]["requested"]
    failed = [r for r in rejects if r["reason"] == "request_failed"]
    assert len(rows) + len(failed) == requested and summary["responses"]["not_sent"] == 0
    assert len({r["id"] for r in rows + failed}) == requested
    assert sum(faults.values()) >= 5 and summary["attempts"]["retries"] >= 5
    assert all(r["detail"] for r in failed)


def test_sigkill_mid_synth_then_rerun_pays_only_for_what_was_in_flight(tmp_path, seed_file, server):
    concurrency = 4
    raw = api_recipe(
        tmp_path,
        seed_file,
        server.base_url,
        api={"concurrency": concurrency},
        prompts={"tasks": ["all"], "per_task": 60},
        sampling={"max_new_tokens": 24, "temperature": 0.0},
    )
    path = write(tmp_path, raw)
    journal = tmp_path / "run" / "synth" / "journal.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-m", "distil.cli", "synth", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if journal.is_file() and journal.read_bytes().count(b'"status"') >= 12:
            break
        time.sleep(0.05)
    assert child.poll() is None, "synth finished before it could be killed; give it more work"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done_before = {line["key"] for line in journal_lines(tmp_path / "run")}
    assert 12 <= len(done_before) < 64

    result = run_synth(validate_recipe(raw))
    rows, _, summary = outputs(tmp_path / "run")
    requested = summary["responses"]["requested"]
    assert len(rows) == result.kept == requested and len({r["id"] for r in rows}) == requested
    assert summary["sent_this_run"] == requested - len(done_before)
    keys = [line["key"] for line in journal_lines(tmp_path / "run")]
    assert len(keys) == len(set(keys)) == requested  # each request journaled once
    paid = {k: n for k, n in server.stats()["completed_by_key"].items() if k in set(keys)}
    twice = [k for k, n in paid.items() if n > 1]
    assert len(paid) == requested and len(twice) <= concurrency  # only those in flight at the kill
    assert not set(twice) & done_before


@pytest.mark.parametrize("case", ["wrong key", "unknown model", "logprobs refused"])
def test_bad_input_against_a_real_server(tmp_path, seed_file, teacher, monkeypatch, capsys, case):
    secret = "sk-right-0123456789abcdef"
    settings = {"refuse_logprobs": True} if case == "logprobs refused" else {}
    with running_server(teacher, api_key=secret, **settings) as running:
        raw = api_recipe(
            tmp_path, seed_file, running.base_url, api={"api_key_env": KEY_ENV}, sampling={"top_logprobs": 2}
        )
        monkeypatch.setenv(KEY_ENV, secret)
        if case == "wrong key":
            monkeypatch.setenv(KEY_ENV, "sk-wrong-0123456789abcdef")
            message = "refused the API key (401: "
        elif case == "unknown model":
            raw["teacher"]["model"] = "no-such-model"
            message = "model 'no-such-model' is not served at"
        else:
            message = "the teacher refuses logprobs (rejected by the server (400: "
        result = in_process(monkeypatch, capsys, "synth", write(tmp_path, raw))
    one_line_error(result, message)
    assert secret not in result.stderr and "sk-wrong-0123456789abcdef" not in result.stderr
    if case == "wrong key":
        assert f"set the environment variable {KEY_ENV} to a valid key" in result.stderr


def test_capture_through_the_api_equals_white_box_capture(tmp_path, dataset, server):
    """`distil capture` with teacher.api scores each response over HTTP (echo + logprobs)."""
    import numpy as np

    from distil.capture import capture, capture_dir
    from distil.signals import SignalStore
    from tests.conftest import recipe_dict

    settings = {"top_k": 6, "logprob_dtype": "float32", "batch_size": 4, "shard_tokens": 200}
    local = validate_recipe(
        recipe_dict(tmp_path, dataset, capture={**settings, "output": str(tmp_path / "white")})
    )
    remote = validate_recipe(
        recipe_dict(
            tmp_path,
            dataset,
            capture={**settings, "output": str(tmp_path / "scored")},
            teacher={
                "model": "tiny-teacher",
                "api": {
                    "base_url": server.base_url,
                    "api_key_env": None,
                    "concurrency": 4,
                    "endpoint": "completions",
                    "tokenizer": "tiny-teacher",
                },
            },
            signals={"path": "capture"},
        )
    )
    before = sum(server.stats()["completed"].values())
    result = capture(remote)
    assert result.captured == result.samples > 0
    assert sum(server.stats()["completed"].values()) - before >= result.samples  # a call per row
    capture(local)
    with SignalStore(capture_dir(local)) as white, SignalStore(capture_dir(remote)) as scored:
        assert sorted(white.sample_ids()) == sorted(scored.sample_ids())
        assert scored.fingerprint["source"] == "score" and scored.fingerprint["temperature"] == 1.0
        for sample_id in white.sample_ids():
            a, b = white.get(sample_id), scored.get(sample_id)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=1e-4, atol=1e-4)
    again = capture(remote)  # resumes: nothing left to score
    assert again.captured == 0


def test_capture_from_generation_logprobs_sends_nothing_and_matches_white_box(tmp_path, seed_file):
    """A teacher that cannot score: the top logprobs synth kept become the store, every
    position (the end-of-turn token's too) as the teacher returned it.

    Served: the demo teacher, whose answers are clean text (a random model's bytes are not
    valid UTF-8, so its text does not re-tokenise to the ids it generated)."""
    import numpy as np

    from distil.capture import capture, capture_dir
    from distil.signals import SignalStore

    with running_server("demo", served_name="demo") as demo:
        raw = api_recipe(
            tmp_path,
            seed_file,
            demo.base_url,
            api={"tokenizer": "demo"},
            prompts={"file": None, "tasks": ["all"], "per_task": 2},
            sampling={"max_new_tokens": 16, "temperature": 0.0, "top_logprobs": 6},
        )
        raw["teacher"]["model"] = "demo"
        raw["student"] = {"model": "demo", "layers": [0, 9]}
        run_synth(validate_recipe(raw))
        settings = {"top_k": 6, "logprob_dtype": "float32", "batch_size": 4}
        raw["capture"] = {**settings, "source": "generation", "output": str(tmp_path / "generated")}
        before = sum(demo.stats()["completed"].values())
        generated = capture(validate_recipe(raw))
        assert sum(demo.stats()["completed"].values()) == before  # no request sent
    local = {**raw, "teacher": {"model": "demo"}, "capture": {**settings, "output": str(tmp_path / "white")}}
    capture(validate_recipe(local))
    assert generated.samples >= 10
    with (
        SignalStore(capture_dir(validate_recipe(local))) as white,
        SignalStore(tmp_path / "generated") as gen,
    ):
        assert gen.fingerprint["source"] == "generation"
        assert sorted(white.sample_ids()) == sorted(gen.sample_ids())
        for sample_id in white.sample_ids():
            a, b = white.get(sample_id), gen.get(sample_id)
            np.testing.assert_array_equal(a.ids, b.ids)  # the end-of-turn row included
            np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=1e-3, atol=1e-3)
    raw["capture"]["source"] = "score"
    raw["teacher"] = {"model": "demo"}
    with pytest.raises(Exception, match="capture.source=score needs a teacher behind an API"):
        capture(validate_recipe(raw))
