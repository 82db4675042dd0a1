"""Map the token strings an API returns to ids of the teacher's tokenizer, counting misses.

APIs return tokens as text (`" the"`), sometimes as raw vocabulary entries (`"Ġthe"`), and
vLLM can return `"token_id:1234"`. A string maps to an id when it is one of those forms for
exactly one vocabulary entry. When the string alone does not map (a piece of a multi-byte
character reads as U+FFFD), the token's raw `bytes` (chat logprobs carry them) are tried
as a byte-level BPE entry or a `<0xNN>` byte-fallback entry. Anything else (a different
tokenizer) is a mismatch: its id stays None and it is counted, never guessed.

    mapper = TokenMap(tokenizer)
    mapper.to_id(" the")            # 262, or None
    mapper.report()                 # "3 of 1,204 token strings ... did not map ..."
    tokenizer = load_tokenizer("Qwen/Qwen2.5-0.5B-Instruct")   # teacher.api.tokenizer, alone

Also here: how a prompt is rendered as text and counted in tokens when only a tokenizer
(not the model) is at hand.
"""

from functools import lru_cache
from typing import Any

from distil.errors import ModelError
from distil.models import BUILTIN_MODELS, DEMO_TEACHER_DIR, byte_tokenizer
from distil.models.gguf import converted, gguf_path
from distil.teachers.base import Prompt, as_messages


def load_tokenizer(name: str) -> Any:
    """A tokenizer alone (teacher.api.tokenizer): a built-in name, `demo`, a folder, a hub id,
    a GGUF file or a packaged model (the tokenizer of its converted copy)."""
    if name in BUILTIN_MODELS:
        return byte_tokenizer()
    from transformers import AutoTokenizer

    file = gguf_path(name)
    if file is not None:
        source = str(converted(file)[0])
    else:
        source = str(DEMO_TEACHER_DIR) if name == "demo" else name
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"cannot load teacher.api.tokenizer {name!r}: {first}; name a tokenizer "
            "folder, a hub id, a .gguf file or a built-in model"
        ) from None


def render_prompt(prompt: Prompt, tokenizer: Any = None) -> str:
    """A prompt as text: the tokenizer's chat template when it has one, else the plain text."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
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
        self._cache: dict[tuple[str, tuple[int, ...] | None], int | None] = {}
        self.mapped = 0
        self.mismatched = 0

    def to_id(self, token: str, token_bytes: list[int] | None = None) -> int | None:
        """The id of `token` (or of its raw bytes), or None (counted as a mismatch)."""
        key = (token, tuple(token_bytes) if token_bytes else None)
        if key not in self._cache:
            found = self._lookup(token)
            if found is None and token_bytes:
                found = self._from_bytes(token_bytes)
            self._cache[key] = found
        found = self._cache[key]
        if found is None:
            self.mismatched += 1
        else:
            self.mapped += 1
        return found

    def _from_bytes(self, token_bytes: list[int]) -> int | None:
        table = _byte_level_encoder()
        found = self.vocab.get("".join(table[b] for b in token_bytes if 0 <= b < 256))
        if found is None and len(token_bytes) == 1:
            found = self.vocab.get(f"<0x{token_bytes[0]:02X}>")
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
        return (
            f"{self.mismatched:,} of {total:,} token strings from the API did not map to a "
            f"single id of {self.name} (their ids are left empty); the server's tokenizer "
            "may differ from teacher.api.tokenizer"
        )


@lru_cache(maxsize=1)
def _byte_level_encoder() -> dict[int, str]:
    """GPT-2's byte → printable character table, the alphabet of byte-level BPE vocabularies."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table
