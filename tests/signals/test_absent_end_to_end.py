"""Black-box KD from servers that return no logprobs for some positions: synth, capture (every
row, the positions stored absent), train (the divergence skipped there).

- always: a real HTTP server standing in for a hosted chat API: chat completions only (no
  scoring), no token ids, and no logprob entry for the end-of-turn token, as OpenAI's chat
  API answers; it relays `distil serve` running the demo teacher.
- when llama.cpp's `llama-server` is at hand (LLAMA_SERVER, or on PATH) and the packaged
  SmolLM2 is in the cache: the server itself, whose answers cut by a stop string carry no
  logprobs for the stop string's tokens (nor for an end-of-turn token).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from distil.capture import capture, capture_dir
from distil.recipe import validate_recipe
from distil.server.run import ServerThread, bind, url_of
from distil.server.testing import running_server, wait_until_ready
from distil.signals import SignalStore
from distil.synth.stage import run_synth
from tests.conftest import SMOLLM2, write_jsonl
from tests.synth.conftest import outputs
from tests.synth.test_cli_synth import in_process
from tests.synth.test_serve_e2e import api_recipe

pytestmark = pytest.mark.slow


def chat_only_api(upstream: str):
    """An OpenAI-like chat endpoint in front of `upstream`: /v1/completions is not served
    (so nothing can be scored), ids are not sent, and a reply that ended on the end-of-turn
    token lists no logprob for it."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        async with httpx.AsyncClient() as client:
            return JSONResponse((await client.get(f"{upstream}/v1/models")).json())

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.post(f"{upstream}/v1/chat/completions", json=await request.json())
        body = answer.json()
        for choice in body.get("choices", []):
            content = (choice.get("logprobs") or {}).get("content")
            if content and choice["finish_reason"] == "stop":
                del content[-1]  # the end-of-turn token: hosted chat APIs report none
            for item in content or []:
                for entry in [item, *item.get("top_logprobs", [])]:
                    entry.pop("token_id", None)
        return JSONResponse(body, status_code=answer.status_code)

    return app


def test_a_chat_api_without_end_of_turn_logprobs_captures_every_row_and_trains(tmp_path, monkeypatch, capsys):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": "unused"}])
    with running_server("demo", served_name="demo") as demo, ServerThread(chat_only_api(demo.url)) as api:
        raw = api_recipe(
            tmp_path,
            seeds,
            api.base_url,
            api={"tokenizer": "demo"},
            prompts={"file": None, "tasks": ["all"], "per_task": 2},
            sampling={"max_new_tokens": 16, "temperature": 0.0, "top_logprobs": 6},
        )
        raw["teacher"]["model"] = "demo"
        raw["student"] = {"model": "demo", "layers": [0, 9]}
        raw["capture"] = {"top_k": 6, "logprob_dtype": "float32", "source": "auto"}
        raw["signals"] = {"path": "capture"}
        raw["distill"] = {"kd_weight": 1.0, "ce_weight": 0.0}
        raw["data"]["eval_fraction"] = 0.0
        run_synth(validate_recipe(raw))
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(raw))
        captured = in_process(monkeypatch, capsys, "capture", str(recipe))
    rows, _, _ = outputs(tmp_path / "run")
    stopped = [row["id"] for row in rows if row["finish_reason"] == "stop"]
    assert captured.returncode == 0, captured.stderr
    assert len(rows) >= 10 and stopped
    store_path = capture_dir(validate_recipe(raw))
    with SignalStore(store_path) as store:
        assert len(store) == len(rows) and store.num_absent == len(stopped)
        assert f", {len(stopped)} of them absent: no teacher distribution" in captured.stdout
        for row in rows:  # the end-of-turn position of each row that stopped, nothing else
            sample = store.get(row["id"])
            absent = [] if sample.absent is None else np.flatnonzero(sample.absent).tolist()
            assert absent == ([sample.num_tokens - 1] if row["id"] in stopped else [])

    white = {
        **raw,
        "teacher": {"model": "demo"},
        "capture": {"top_k": 6, "logprob_dtype": "float32", "output": str(tmp_path / "white")},
    }
    capture(validate_recipe(white))
    with SignalStore(tmp_path / "white") as local, SignalStore(store_path) as generated:
        for row in rows:  # the present positions are what the teacher computes
            a, b = local.get(row["id"]), generated.get(row["id"])
            kept = slice(0, b.num_tokens - b.num_absent)
            np.testing.assert_array_equal(a.ids[kept], b.ids[kept])
            np.testing.assert_allclose(a.logprobs[kept], b.logprobs[kept], rtol=1e-3, atol=1e-3)

    trained = in_process(monkeypatch, capsys, "train", str(recipe))
    assert trained.returncode == 0, trained.stderr
    said = " ".join((trained.stdout + trained.stderr).split())  # the console wraps lines
    assert (
        f"{len(stopped)} of " in said
        and "are absent (no teacher distribution there" in said
        and "with distill.ce_weight 0 nothing is learned there" in said
    ), said
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["signal_positions"]["absent"] == len(stopped)
    assert np.isfinite(summary["final_loss"])


def llama_server() -> str | None:
    """llama.cpp's server binary: $LLAMA_SERVER, else `llama-server` on PATH."""
    found = os.environ.get("LLAMA_SERVER") or shutil.which("llama-server")
    return found if found and Path(found).is_file() else None


def test_llama_server_stop_strings_leave_positions_absent_and_every_row_captures(
    tmp_path, monkeypatch, capsys
):
    from distil.models.packaged import locate

    binary, gguf = llama_server(), locate(SMOLLM2)
    if binary is None or gguf is None:
        pytest.skip(
            "needs llama.cpp's llama-server (set LLAMA_SERVER) and the packaged SmolLM2 "
            "in the cache (DISTIL_TEST_CACHE)"
        )
    sock = bind("127.0.0.1", 0)
    url = url_of(sock)
    port = sock.getsockname()[1]
    sock.close()
    log = (tmp_path / "llama-server.log").open("w")
    server = subprocess.Popen(
        [
            binary,
            "-m",
            str(gguf),
            "--alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-c",
            "2048",
            "-np",
            "1",
            "-t",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_ready(url, timeout=120, process=server)
        prompts = [
            "What is the capital of France? Answer in a few words.",  # "... is Paris."
            "What is 2 + 2? Answer with a number.",
        ]  # "2 + 2 = 4"
        write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in prompts])
        raw = {
            "name": "llama",
            "seed": 0,
            "output_dir": str(tmp_path / "run"),
            "teacher": {
                "model": "smollm2",
                "api": {
                    "base_url": f"{url}/v1",
                    "api_key_env": None,
                    "endpoint": "chat",
                    "concurrency": 1,
                    "tokenizer": SMOLLM2,
                },
            },
            "student": {"model": SMOLLM2, "layers": [0]},
            "synth": {
                "prompts": {"file": str(tmp_path / "prompts.jsonl")},
                "sampling": {
                    "max_new_tokens": 24,
                    "temperature": 0.0,
                    "top_logprobs": 5,
                    "stop": ["is Paris"],
                },
                "dedup": {"minhash_threshold": None},
            },
            "capture": {"top_k": 5, "source": "auto"},
            "signals": {"path": "capture"},
            "data": {"eval_fraction": 0.0, "max_length": 128},
            "distill": {"kd_weight": 1.0, "ce_weight": 0.1},
            "train": {"max_steps": 1, "batch_size": 3, "save_every": 1},
        }
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(raw))
        synthesised = in_process(monkeypatch, capsys, "synth", str(recipe))
        assert synthesised.returncode == 0, synthesised.stderr
        captured = in_process(monkeypatch, capsys, "capture", str(recipe))
    finally:
        server.kill()
        server.wait()
        log.close()
    assert captured.returncode == 0, captured.stderr
    rows, _, _ = outputs(tmp_path / "run")
    with SignalStore(capture_dir(validate_recipe(raw))) as store:
        assert len(store) == len(rows) == 2
        absent = {row["prompt"][:12]: store.get(row["id"]).num_absent for row in rows}
    # cut by a stop string: its end-of-turn token (and a piece of a word before the cut, if
    # any) absent; an answer that ended itself: its end-of-turn token reported, none absent
    assert absent["What is the "] >= 1 and absent["What is 2 + "] == 0, (absent, rows)
    trained = in_process(monkeypatch, capsys, "train", str(recipe))
    assert trained.returncode == 0, trained.stderr
