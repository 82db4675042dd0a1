"""distil audit: a served watermark is found in the text it serves and in a model that learnt
its marked predictions, not under other keys; bad inputs fail clearly, writing nothing."""

import json
import os
from types import SimpleNamespace

import numpy as np
import openai
import pytest
import torch

from distil.audit import AuditSettings, ModelAudit, TextAudit
from distil.audit.modes import audit_model
from distil.audit.run import run_audit
from distil.audit.sources import Document
from distil.errors import DataError, DistilError, ModelError
from distil.models import byte_tokenizer
from distil.provenance import KGWBias, WatermarkError, WatermarkKey, WatermarkSpec
from distil.server.testing import running_server
from distil.teachers import LocalTeacher
from tests.audit.helpers import printable, with_mode

SETTINGS = AuditSettings(gamma=0.25, context_width=2, null_keys=50)
PROMPTS = ["Say something.", "Count: a b c", "Reverse: hello", "Tell me a word.", "Sort: c b a", "Spell: cat"]


@pytest.fixture(scope="module")
def served_texts(tmp_path_factory):
    """Answers of a tiny teacher served with --watermark (delta 4), as a .jsonl file."""
    teacher = printable(LocalTeacher.load("tiny-teacher", device="cpu"))
    with running_server(
        teacher, watermark=True, watermark_delta=4.0, watermark_key=WatermarkKey("served-secret")
    ) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        answer = client.completions.create(
            model="tiny-teacher", prompt=PROMPTS, max_tokens=48, temperature=1.0, seed=0
        )  # one batched request
        answers = [choice.text for choice in answer.choices]
    path = tmp_path_factory.mktemp("served") / "answers.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": p, "response": a}) + "\n" for p, a in zip(PROMPTS, answers, strict=True)
        )
    )
    return path


def _text(out, files, tokenizer: str = "demo") -> TextAudit:
    return with_mode(TextAudit, SETTINGS, key_env="AUDIT_KEY", out=out, files=files, tokenizer=tokenizer)


def test_a_served_watermark_is_detected_in_its_text(served_texts, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_KEY", "served-secret")
    json_path, md_path, line = run_audit(_text(tmp_path / "out", [served_texts], "tiny-teacher"))
    result = json.loads(json_path.read_text())
    assert result["flagged"] and result["score"]["log10_p"] < -5, line
    answers = [json.loads(line)["response"] for line in served_texts.read_text().splitlines()]
    written = [a for a in answers if a.strip()]  # a blank answer is no document to audit
    assert len(written) >= 4 and len(result["documents"]) == len(written)
    assert result["null"]["keys"] == 50
    assert result["null"]["empirical_p"] == pytest.approx(1 / 51)  # beyond every random key
    assert "served-secret" not in json_path.read_text() + md_path.read_text()
    assert "WATERMARK DETECTED" in md_path.read_text()


def test_short_answers_are_scored_after_their_prompt():
    # a chat model's first answer tokens follow the rendered prompt, and the mark's context
    # for them lies there; scored alone, two-token answers gave nothing to score at all
    from distil.audit.modes import audit_text
    from distil.audit.sources import audit_tokenizer
    from distil.provenance import green_mask

    tokenizer, key, spec = audit_tokenizer("demo"), WatermarkKey("short-answers"), SETTINGS.spec
    symbols = [tokenizer.convert_tokens_to_ids(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]

    def greens(context: list[int]) -> list[int]:
        mask = green_mask(key, spec, np.array([context]), len(tokenizer))[0]
        return [t for t in symbols if mask[t]]

    documents = []
    for i in range(60):  # two-token answers, both tokens green after their contexts
        prompt = f"Name a number between {10 + i} and {19 + i}."
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        context = tokenizer(rendered, add_special_tokens=False).input_ids[-2:]
        firsts = greens(context)
        first = firsts[i % len(firsts)]
        seconds = greens([context[-1], first])
        second = seconds[i // len(firsts) % len(seconds)]
        documents.append(Document(f"row {i}", tokenizer.decode([first, second]), prompt))
    marked = audit_text(documents, tokenizer, key, SETTINGS)
    assert marked["score"]["tokens"] == 2 * len(documents)
    assert marked["score"]["kept"] >= 40 and marked["score"]["p_value"] < 1e-20
    other = audit_text(documents, tokenizer, WatermarkKey("another"), SETTINGS)
    assert other["score"]["p_value"] > 1e-3


def test_another_key_finds_nothing(served_texts, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_KEY", "not-the-key")
    json_path, _, _ = run_audit(_text(tmp_path, [served_texts], "tiny-teacher"))
    assert not json.loads(json_path.read_text())["flagged"]


class _LearntTheMark(torch.nn.Module):
    """A "student" whose next-token scores are the marked teacher's bias (plus noise): what
    a model distilled from the marked distribution leans towards."""

    def __init__(self, bias: KGWBias | None, vocab: int) -> None:
        super().__init__()
        self.bias, self.vocab = bias, vocab
        self.config = SimpleNamespace(max_position_embeddings=64)

    def forward(self, input_ids, attention_mask):
        generator = torch.Generator().manual_seed(0)
        logits = torch.randn((*input_ids.shape, self.vocab), generator=generator)
        if self.bias is not None:
            for t in range(1, input_ids.shape[1]):
                logits[:, t] += self.bias(input_ids[:, t - 1 : t + 1])
        return SimpleNamespace(logits=logits)


def test_open_model_audit_finds_a_model_that_learnt_the_mark():
    key, tokenizer = WatermarkKey("teacher-secret"), byte_tokenizer()
    corpus = [Document(f"d{i}", f"the quick brown fox {i} jumps over {i * 7} lazy dogs") for i in range(8)]
    bias = KGWBias(key, WatermarkSpec(gamma=0.25, delta=2.0), 260)
    marked = audit_model(_LearntTheMark(bias, 260), tokenizer, corpus, key, SETTINGS)
    plain = audit_model(_LearntTheMark(None, 260), tokenizer, corpus, key, SETTINGS)
    assert marked["score"]["log10_p"] < -5 and marked["score"]["kept"] <= marked["score"]["tokens"]
    assert plain["score"]["log10_p"] > -3
    top3 = audit_model(_LearntTheMark(None, 260), tokenizer, corpus, key, SETTINGS, top_k=3)
    assert top3["score"]["tokens"] == 3 * plain["score"]["tokens"]


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, monkeypatch, served_texts):
    out = tmp_path / "out"
    monkeypatch.delenv("AUDIT_KEY", raising=False)
    with pytest.raises(WatermarkError, match="AUDIT_KEY is not set"):
        run_audit(_text(out, [served_texts]))
    monkeypatch.setenv("AUDIT_KEY", "k")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(DataError, match="holds no text"):
        run_audit(_text(out, [empty]))
    with pytest.raises(DataError, match="does not exist"):
        run_audit(_text(out, [tmp_path / "nope.txt"]))
    with pytest.raises(ModelError, match="tokenizer"):
        run_audit(_text(out, [served_texts], str(tmp_path / "no-such-tokenizer")))
    with pytest.raises(DistilError, match="not a model folder"):
        run_audit(
            with_mode(
                ModelAudit, SETTINGS, key_env="AUDIT_KEY", out=out, model=str(tmp_path / "nothing"), tasks=2
            )
        )
    assert not (out / "audit.json").exists()


def test_serve_refuses_to_mark_without_its_key_before_loading(monkeypatch):
    from distil.server.run import serve
    from distil.server.settings import ServerSettings, StartSettings

    monkeypatch.delenv("NO_SUCH_WATERMARK_KEY", raising=False)
    settings = ServerSettings(served_name="x", watermark=True, watermark_key_env="NO_SUCH_WATERMARK_KEY")
    with pytest.raises(WatermarkError, match="NO_SUCH_WATERMARK_KEY is not set"):
        serve("no-such-model-is-loaded", settings, StartSettings(port=0))


def test_the_audit_command_writes_its_verdict_and_errors_in_one_line(
    served_texts, tmp_path, monkeypatch, capsys
):
    from tests.cli_helpers import assert_one_error_line, run_cli

    monkeypatch.delenv("AUDIT_KEY", raising=False)
    result = run_cli(
        monkeypatch,
        capsys,
        "audit",
        "text",
        str(served_texts),
        "--key-env",
        "AUDIT_KEY",
        "--tokenizer",
        "tiny-teacher",
        "--out",
        str(tmp_path / "a"),
    )
    assert_one_error_line(result, "AUDIT_KEY is not set")
    monkeypatch.setenv("AUDIT_KEY", "served-secret")
    result = run_cli(
        monkeypatch,
        capsys,
        "audit",
        "text",
        str(served_texts),
        "--key-env",
        "AUDIT_KEY",
        "--tokenizer",
        "tiny-teacher",
        "--out",
        str(tmp_path / "a"),
        "--null-keys",
        "10",
    )
    assert result.returncode == 0 and "WATERMARK DETECTED" in result.stdout
    assert (tmp_path / "a" / "audit.md").is_file()


def test_a_key_that_is_not_utf8_is_read_as_its_bytes_by_audit_and_serve(monkeypatch, tmp_path, capsys):
    # a binary secret in the environment raised UnicodeEncodeError in both commands
    from distil.server.settings import ServerSettings
    from distil.server.watermark import watermark_key
    from tests.cli_helpers import run_cli

    monkeypatch.setitem(os.environb, b"BYTES_KEY", b"\xff\xfe-secret")
    expected = WatermarkKey(b"\xff\xfe-secret").seed(b"context")
    assert WatermarkKey.from_env("BYTES_KEY").seed(b"context") == expected
    served = ServerSettings(served_name="x", watermark=True, watermark_key_env="BYTES_KEY")
    assert watermark_key(served).seed(b"context") == expected
    text = tmp_path / "answer.txt"
    text.write_text("the quick brown fox jumps over the lazy dog, twice over\n")
    result = run_cli(
        monkeypatch,
        capsys,
        "audit",
        "text",
        str(text),
        "--key-env",
        "BYTES_KEY",
        "--null-keys",
        "0",
        "--out",
        str(tmp_path / "a"),
    )
    assert result.returncode == 0, result.stderr
    assert "b'\\xff" not in (tmp_path / "a" / "audit.json").read_text()


def test_top_k_beyond_the_vocabulary_is_one_clear_error():
    key, tokenizer = WatermarkKey("k"), byte_tokenizer()
    corpus = [Document("d", "the quick brown fox jumps over the lazy dog")]
    with pytest.raises(ModelError, match="--top-k 261 exceeds the model's vocabulary of 260"):
        audit_model(_LearntTheMark(None, 260), tokenizer, corpus, key, SETTINGS, top_k=261)
