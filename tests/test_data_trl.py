"""TRL's prompt/completion rows are encoded as TRL encodes them: two strings are joined as
they are (no chat template, loss on the completion and its end token), message lists go
through the chat template; distil's own prompt/response rows keep the chat template (the
demo's data); the template's text after an end-of-turn token is not learned, where TRL's
completion_only_loss learns it (the difference docs/trl.md gives the reason for)."""

import pytest

from distil.data import encode_pairs, load_pairs
from distil.losses import IGNORE_INDEX
from distil.models import byte_tokenizer
from tests.conftest import write_jsonl


def _encoded(tmp_path, rows, template="auto"):
    tokenizer = byte_tokenizer()  # has a chat template: <|user|>...<|end|><|assistant|>
    (example,) = encode_pairs(tokenizer, load_pairs(write_jsonl(tmp_path / "d.jsonl", rows)), template, 256)
    learned = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    assert learned == example.input_ids[len(example.input_ids) - len(learned) :]  # one tail
    return tokenizer.decode(example.input_ids), tokenizer.decode(learned)


def test_text_prompt_completion_rows_are_not_chat_templated(tmp_path):
    text, learned = _encoded(tmp_path, [{"prompt": "The sky is", "completion": " blue."}])
    assert (text, learned) == ("The sky is blue.<|end|>", " blue.<|end|>")


def test_template_chat_still_templates_them(tmp_path):
    text, learned = _encoded(tmp_path, [{"prompt": "The sky is", "completion": " blue."}], "chat")
    assert (text, learned) == ("<|user|>The sky is<|end|><|assistant|> blue.<|end|>", " blue.<|end|>")


@pytest.mark.parametrize(
    "row",
    [
        {"prompt": "2+2?", "response": "4"},  # distil's prompt/response pairs (what synth writes)
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "completion": [{"role": "assistant", "content": "4"}],
        },  # TRL's conversational rows
    ],
)
def test_pairs_and_conversational_rows_keep_the_chat_template(tmp_path, row):
    assert _encoded(tmp_path, [row]) == ("<|user|>2+2?<|end|><|assistant|>4<|end|>", "4<|end|>")


CHATML_LIKE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""A template that, like ChatML (SmolLM2, Qwen), writes a newline after each end-of-turn."""


def test_the_newline_after_the_end_of_turn_is_not_learned(tmp_path):
    """docs/trl.md: TRL's completion_only_loss learns "4<|end|>\\n" here; distil learns each
    answer up to its end token, where generation stops, and masks what the template writes
    after it."""
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = CHATML_LIKE
    row = {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "3+3?"},
            {"role": "assistant", "content": "6"},
        ]
    }
    (example,) = encode_pairs(tokenizer, load_pairs(write_jsonl(tmp_path / "m.jsonl", [row])), "auto", 256)
    assert tokenizer.decode(example.input_ids) == (
        "<|user|>2+2?<|end|>\n<|assistant|>4<|end|>\n<|user|>3+3?<|end|>\n<|assistant|>6<|end|>"
    )
    labelled = [
        tokenizer.decode([t])
        for t, label in zip(example.input_ids, example.labels, strict=True)
        if label != IGNORE_INDEX
    ]
    assert "".join(labelled) == "4<|end|>6<|end|>"
