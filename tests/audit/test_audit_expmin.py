"""distil audit --scheme exp-min: what `distil serve --watermark --watermark-scheme exp-min`
samples is found under its key (text and API modes), not under other keys; its greedy answers
and logprobs are the model's own and carry no mark; a model that learnt the mark is found by
its top-1 predictions. The served text is a fixed function of the key and the prompts, so the
verdicts below do not vary from run to run."""

import json
from types import SimpleNamespace

import numpy as np
import openai
import pytest
import torch
from pydantic import ValidationError

from distil.audit import ApiAudit, AuditSettings, TextAudit
from distil.audit.modes import audit_model
from distil.audit.run import run_audit
from distil.audit.sources import Document
from distil.models import byte_tokenizer
from distil.provenance import WatermarkKey, context_seeds, tuple_scores
from distil.server.testing import running_server
from distil.teachers import LocalTeacher
from tests.audit.helpers import printable, with_mode

SECRET = "exp-min-secret"
SETTINGS = AuditSettings(context_width=2, null_keys=50, scheme="exp-min")
PROMPTS = ["Say something.", "Count: a b c", "Reverse: hello", "Tell me a word.", "Sort: c b a", "Spell: cat"]


@pytest.fixture(scope="module")
def teacher() -> LocalTeacher:
    return printable(LocalTeacher.load("tiny-teacher", device="cpu"))


def _answers(server, temperature: float) -> list[openai.types.CompletionChoice]:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    return client.completions.create(
        model="tiny-teacher", prompt=PROMPTS, max_tokens=48, temperature=temperature, logprobs=2
    ).choices


def _jsonl(path, answers) -> str:
    path.write_text(
        "".join(
            json.dumps({"prompt": p, "response": a.text}) + "\n"
            for p, a in zip(PROMPTS, answers, strict=True)
        )
    )
    return path


@pytest.fixture(scope="module")
def served(teacher, tmp_path_factory):
    """Sampled (T = 1) and greedy answers of the marked server, and greedy ones of an unmarked one."""
    folder = tmp_path_factory.mktemp("served")
    with running_server(
        teacher, watermark=True, watermark_scheme="exp-min", watermark_key=WatermarkKey(SECRET)
    ) as server:
        sampled, greedy = _answers(server, 1.0), _answers(server, 0.0)
    with running_server(teacher) as server:
        unmarked_greedy = _answers(server, 0.0)
    return SimpleNamespace(
        sampled=_jsonl(folder / "sampled.jsonl", sampled),
        greedy=_jsonl(folder / "greedy.jsonl", greedy),
        greedy_answers=greedy,
        unmarked_greedy=unmarked_greedy,
    )


def _audit(tmp_path, monkeypatch, secret: str, files, settings=SETTINGS) -> dict:
    monkeypatch.setenv("AUDIT_KEY", secret)
    json_path, _, _ = run_audit(
        with_mode(
            TextAudit,
            settings,
            key_env="AUDIT_KEY",
            out=tmp_path / secret,
            files=files,
            tokenizer="tiny-teacher",
        )
    )
    return json.loads(json_path.read_text())


def test_sampled_text_is_detected_under_its_key(served, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_KEY", SECRET)
    json_path, md_path, line = run_audit(
        with_mode(
            TextAudit,
            SETTINGS,
            key_env="AUDIT_KEY",
            out=tmp_path,
            files=[served.sampled],
            tokenizer="tiny-teacher",
        )
    )
    result = json.loads(json_path.read_text())
    assert result["flagged"] and result["score"]["log10_p"] < -10, line
    assert result["score"]["total_score"] > 1.5 * result["score"]["kept"]
    assert result["settings"]["scheme"] == "exp-min"
    assert result["null"]["empirical_p"] == pytest.approx(1 / 51)  # beyond every random key
    markdown = md_path.read_text()
    assert "exp-min (distortion-free)" in markdown and "exact gamma p-value" in markdown
    assert "WATERMARK DETECTED" in markdown and "score" in line
    assert SECRET not in json_path.read_text() + markdown


def test_other_keys_and_the_other_scheme_find_nothing(served, tmp_path, monkeypatch):
    assert not _audit(tmp_path, monkeypatch, "not-the-key", [served.sampled])["flagged"]
    kgw = AuditSettings(context_width=2, null_keys=0, scheme="kgw")
    assert not _audit(tmp_path, monkeypatch, SECRET, [served.sampled], kgw)["flagged"]


def test_greedy_answers_are_the_models_own_and_unmarked(served, tmp_path, monkeypatch):
    marked, unmarked = served.greedy_answers, served.unmarked_greedy
    assert [a.text for a in marked] == [a.text for a in unmarked]
    assert [a.logprobs.token_logprobs for a in marked] == [a.logprobs.token_logprobs for a in unmarked]
    result = _audit(tmp_path, monkeypatch, SECRET, [served.greedy])
    assert not result["flagged"] and result["score"]["log10_p"] > -2


def test_the_api_audit_finds_the_mark_in_sampled_answers_only(teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_KEY", SECRET)
    settings = AuditSettings(context_width=2, null_keys=20, scheme="exp-min")
    with running_server(
        teacher, watermark=True, watermark_scheme="exp-min", watermark_key=WatermarkKey(SECRET)
    ) as server:
        verdicts = {}
        for temperature in (1.0, 0.0):
            json_path, _, _ = run_audit(
                with_mode(
                    ApiAudit,
                    settings,
                    key_env="AUDIT_KEY",
                    out=tmp_path / str(temperature),
                    url=server.base_url,
                    model="tiny-teacher",
                    tasks=1,
                    tokenizer="tiny-teacher",
                    max_tokens=32,
                    temperature=temperature,
                )
            )
            verdicts[temperature] = json.loads(json_path.read_text())
    assert verdicts[1.0]["flagged"] and verdicts[1.0]["score"]["log10_p"] < -10
    assert not verdicts[0.0]["flagged"]


class _LearntExpMin(torch.nn.Module):
    """A "student" that leans towards the tokens the key scores high after each context
    (-log(1 - r) added to random logits): what a model trained on exp-min text would learn."""

    def __init__(self, key: WatermarkKey | None, vocab: int) -> None:
        super().__init__()
        self.key, self.vocab = key, vocab
        self.config = SimpleNamespace(max_position_embeddings=64)

    def forward(self, input_ids, attention_mask):
        logits = torch.randn((*input_ids.shape, self.vocab), generator=torch.Generator().manual_seed(0))
        if self.key is not None:
            for t in range(1, input_ids.shape[1]):
                seeds = context_seeds(self.key, input_ids[:, t - 1 : t + 1].numpy())
                scores = tuple_scores(seeds[:, None], np.arange(self.vocab)[None, :])  # (B, V)
                logits[:, t] += torch.from_numpy(scores).float()
        return SimpleNamespace(logits=logits)


def test_open_model_audit_finds_a_model_that_learnt_the_mark():
    key, tokenizer = WatermarkKey("teacher-secret"), byte_tokenizer()
    corpus = [Document(f"d{i}", f"the quick brown fox {i} jumps over {i * 7} lazy dogs") for i in range(8)]
    marked = audit_model(_LearntExpMin(key, 260), tokenizer, corpus, key, SETTINGS)
    plain = audit_model(_LearntExpMin(None, 260), tokenizer, corpus, key, SETTINGS)
    assert marked["score"]["log10_p"] < -5 and plain["score"]["log10_p"] > -3
    assert marked["null"]["empirical_p"] == pytest.approx(1 / 51)


def test_the_audit_command_takes_the_scheme(served, tmp_path, monkeypatch, capsys):
    from tests.cli_helpers import assert_one_error_line, run_cli

    monkeypatch.setenv("AUDIT_KEY", SECRET)
    args = [
        "audit",
        "text",
        str(served.sampled),
        "--key-env",
        "AUDIT_KEY",
        "--tokenizer",
        "tiny-teacher",
        "--out",
        str(tmp_path / "a"),
        "--null-keys",
        "10",
    ]
    result = run_cli(monkeypatch, capsys, *args, "--scheme", "exp-min")
    assert result.returncode == 0 and "WATERMARK DETECTED" in result.stdout
    assert json.loads((tmp_path / "a" / "audit.json").read_text())["settings"]["scheme"] == "exp-min"
    assert_one_error_line(
        run_cli(monkeypatch, capsys, *args, "--scheme", "gumbel"),
        "--scheme: Input should be 'kgw' or 'exp-min' (got 'gumbel')",
    )
    with pytest.raises(ValidationError, match="'kgw' or 'exp-min'"):
        AuditSettings(scheme="gumbel")
