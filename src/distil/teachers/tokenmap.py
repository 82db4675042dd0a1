"""Map the token strings an API returns to ids of the teacher's tokenizer, counting misses.

APIs return tokens as text (`" the"`), sometimes as raw vocabulary entries (`"Ġthe"`), and
vLLM can return `"token_id:1234"`. A string maps to an id when it is one of those forms for
exactly one vocabulary entry; anything else (a multi-byte character split over tokens, a
different tokenizer) is a mismatch: its id stays None and it is counted, never guessed.

    mapper = TokenMap(tokenizer)
    mapper.to_id(" the")            # 262, or None
    mapper.report()                 # "3 of 1,204 token strings ... did not map ..."

Also here: how a prompt is rendered as text and counted in tokens when only a tokenizer
(not the model) is at hand.
"""

from typing import Any

from distil.teachers.base import Prompt, as_messages


def render_prompt(prompt: Prompt, tokenizer: Any = None) -> str:
    """A prompt as text: the tokenizer's chat template when it has one, else the plain text."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False,
                                             add_generation_prompt=True)
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def count_prompt_tokens(prompt: Prompt, tokenizer: Any = None) -> int:
    """Prompt tokens: counted with the tokenizer when there is one, else ~4 characters each
    plus 4 per message (the usual chat framing)."""
    if tokenizer is not None:
        return len(tokenizer(render_prompt(prompt, tokenizer), add_special_tokens=False).input_ids)
    return sum(4 + -(-len(m["content"]) // 4) for m in as_messages(prompt))


class TokenMap:
    """Cached string → id lookups against one tokenizer, with hit and miss counts."""

    def __init__(self, tokenizer: Any, name: str = "the tokenizer") -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        self._cache: dict[str, int | None] = {}
        self.mapped = 0
        self.mismatched = 0

    def to_id(self, token: str) -> int | None:
        """The id of `token`, or None (counted as a mismatch)."""
        if token not in self._cache:
            self._cache[token] = self._lookup(token)
        found = self._cache[token]
        if found is None:
            self.mismatched += 1
        else:
            self.mapped += 1
        return found

    def _lookup(self, token: str) -> int | None:
        if token.startswith("token_id:"):
            number = token.removeprefix("token_id:")
            return int(number) if number.isdigit() and int(number) < len(self.tokenizer) else None
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) == 1 and self.tokenizer.decode(ids) == token:
            return ids[0]
        return self.vocab.get(token)

    def report(self) -> str | None:
        """One line on mismatches, or None when every string mapped."""
        total = self.mapped + self.mismatched
        if not self.mismatched:
            return None
        return (f"{self.mismatched:,} of {total:,} token strings from the API did not map to a "
                f"single id of {self.name} (their ids are left empty); the server's tokenizer "
                "may differ from teacher.api.tokenizer")
