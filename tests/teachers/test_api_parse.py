"""Parsing servers' replies: the token ids a server names itself are used as sent."""

from openai.types.chat import ChatCompletion

from distil.teachers.api_parse import chat_completion


def llama_server_reply() -> ChatCompletion:
    """The last two positions of a real llama-server reply (build 11434, SmolLM2 Q4_1): ids in
    `id`, the end-of-turn token `<|im_end|>` (id 2) as the empty text."""

    def item(token_id: int, token: str, logprob: float, top: list) -> dict:
        return {
            "id": token_id,
            "token": token,
            "bytes": list(token.encode()),
            "logprob": logprob,
            "top_logprobs": [
                {"id": i, "token": t, "bytes": list(t.encode()), "logprob": lp} for i, t, lp in top
            ],
        }

    content = [
        item(30, ".", -0.2251, [(30, ".", -0.2251), (28, ",", -1.8323), (2, "", -3.8946)]),
        item(2, "", -0.0842, [(2, "", -0.0842), (339, " I", -5.3842), (378, " The", -5.4346)]),
    ]
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "smollm2",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": {"content": content},
                    "message": {"role": "assistant", "content": "."},
                }
            ],
            "usage": {"completion_tokens": 2, "prompt_tokens": 43, "total_tokens": 45},
        }
    )


def test_llama_server_ids_are_read_the_empty_end_of_turn_text_included():
    def by_text(token: str, token_bytes: list[int] | None = None) -> int | None:
        return {".": 30, ",": 28, " I": 339, " The": 378}.get(token)  # "" maps to nothing

    done = chat_completion(llama_server_reply(), by_text, 10)
    assert done.token_ids == (30, 2)
    assert [[a.token_id for a in position.top] for position in done.logprobs] == [[30, 28, 2], [2, 339, 378]]


def test_without_a_server_id_the_text_is_mapped():
    reply = llama_server_reply().model_dump()
    for position in reply["choices"][0]["logprobs"]["content"]:
        for item in [position, *position["top_logprobs"]]:
            del item["id"]
    done = chat_completion(ChatCompletion.model_validate(reply), lambda token, _=None: 7, 10)
    assert done.token_ids == (7, 7)
