"""Chat rows that call tools: assistant `tool_calls`, `tool` results and a `tools` column.

They go through the chat template (transformers' `apply_chat_template(..., tools=...)`) and
are learned as TRL's assistant-only loss learns them: TRL labels the tokens the template
marks with `{% generation %}` (`return_assistant_tokens_mask`), so the reference here is
that mask, token by token, over a template that renders tools and marks assistant text.
A template that cannot render them is refused, naming the row.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distil.data import encode_pairs, load_pairs
from distil.errors import DataError
from distil.losses import IGNORE_INDEX
from distil.models import byte_tokenizer
from tests.conftest import write_jsonl

TOOL_TEMPLATE = (
    "{% if tools %}<|system|>Tools: {% for tool in tools %}{{ tool | tojson }}{% endfor %}<|end|>"
    "{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<|assistant|>{% generation %}{{ m['content'] or '' }}"
    "{% for call in m['tool_calls'] or [] %}<call>{{ call['function']['name'] }}"
    "{{ call['function']['arguments'] | tojson }}</call>{% endfor %}<|end|>{% endgeneration %}"
    "{% elif m['role'] == 'tool' %}<|user|>[result {{ m['name'] }}] {{ m['content'] }}<|end|>"
    "{% else %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""A chat template that renders tools, tool calls and tool results, and marks what an
assistant says (its text, its calls, its end token) with {% generation %}, as TRL asks."""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
MESSAGES = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "-3 C, snow"},
    {"role": "assistant", "content": "Snowing, -3 C."},
    {"role": "user", "content": "And Rome?"},
    {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [{**CALL, "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}],
    },
]


def tool_tokenizer():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = TOOL_TEMPLATE
    return tokenizer


def test_tool_calls_are_learned_as_trls_assistant_only_mask(tmp_path):
    tokenizer = tool_tokenizer()
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": MESSAGES, "tools": TOOLS}])
    (pair,) = load_pairs(path)
    (example,) = encode_pairs(tokenizer, [pair], "chat", 1024)
    reference = tokenizer.apply_chat_template(
        MESSAGES, tools=TOOLS, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert example.input_ids == list(reference["input_ids"])
    learned = [int(label != IGNORE_INDEX) for label in example.labels]
    assert learned == list(reference["assistant_masks"])  # token by token
    assert all(
        label in (IGNORE_INDEX, token) for label, token in zip(example.labels, example.input_ids, strict=True)
    )
    spans = _learned_spans(example, tokenizer)
    assert spans == [
        '<call>get_weather{"city": "Oslo"}</call><|end|>',
        "Snowing, -3 C.<|end|>",
        'Let me look.<call>get_weather{"city": "Rome"}</call><|end|>',
    ]
    assert "-3 C, snow" not in "".join(spans) and "Tools:" not in "".join(spans)  # context only


def test_tools_given_as_a_json_string_in_parquet_read_the_same(tmp_path):
    """Hub datasets often keep `tools` as a JSON string; Parquet gives missing struct keys as nulls."""
    pq.write_table(
        pa.Table.from_pylist([{"messages": MESSAGES, "tools": json.dumps(TOOLS)}]), tmp_path / "d.parquet"
    )
    jsonl = write_jsonl(tmp_path / "d.jsonl", [{"messages": MESSAGES, "tools": TOOLS}])
    tokenizer = tool_tokenizer()
    from_parquet = encode_pairs(tokenizer, load_pairs(tmp_path / "d.parquet"), "chat", 1024)
    assert from_parquet == encode_pairs(tokenizer, load_pairs(jsonl), "chat", 1024)


def test_the_tools_and_calls_decide_the_sample_id(tmp_path):
    other = json.loads(json.dumps(MESSAGES))
    other[2]["tool_calls"][0]["function"]["arguments"] = {"city": "Bergen"}
    rows = [
        {"messages": MESSAGES, "tools": TOOLS},
        {"messages": other, "tools": TOOLS},
        {"messages": MESSAGES},
    ]
    ids = [p.sample_id for p in load_pairs(write_jsonl(tmp_path / "d.jsonl", rows))]
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    "case,match",
    [
        (
            "calls, template without them",
            r"d.jsonl line 2: message 3, an assistant turn, calls tools \(get_weather\), but the chat "
            r"template does not render the calls.*set data.chat_template",
        ),
        (
            "tools, template without them",
            r"d.jsonl line 2: the row gives 'tools' \(function schemas\), but the chat template does not "
            r"render them",
        ),
        ("plain template", r"d.jsonl line 2: the row uses tools, which only a chat template can render"),
    ],
)
def test_a_template_that_cannot_render_tools_is_refused_naming_the_row(tmp_path, case, match):
    rows = [
        {"messages": MESSAGES[1:2] + [{"role": "assistant", "content": "ok"}]},
        {"messages": MESSAGES, **({"tools": TOOLS} if "tools," in case else {})},
    ]
    pairs = load_pairs(write_jsonl(tmp_path / "d.jsonl", rows))
    tokenizer = byte_tokenizer()  # its template renders role and content only
    with pytest.raises(DataError, match=match):
        encode_pairs(tokenizer, pairs, "plain" if case == "plain template" else "chat", 1024)


@pytest.mark.parametrize("calls", ["not a list", [{"function": {"arguments": "{}"}}]])
def test_malformed_tool_calls_name_the_message(tmp_path, calls):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": calls}]
    with pytest.raises(DataError, match=r"d.jsonl line 1: 'messages': message 2 has tool_calls that"):
        load_pairs(write_jsonl(tmp_path / "d.jsonl", [{"messages": messages}]))


def _learned_spans(example, tokenizer) -> list[str]:
    spans, current = [], []
    for label in [*example.labels, IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return spans
