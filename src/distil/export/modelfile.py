"""An Ollama `Modelfile` next to a GGUF file, so that `ollama create NAME -f Modelfile` runs it.

Ollama writes prompts with Go templates, not Jinja. The model's chat template is rendered
once for a user message (and once with a system message before it) with markers in place
of the contents; what surrounds the markers becomes the Go template around `{{ .Prompt }}`
and `{{ .System }}`. Single-turn prompts therefore read exactly as the model was trained
on; the stop token is the tokenizer's eos. Greedy decoding (temperature 0) is what the
parity check measured.
"""

from pathlib import Path
from typing import Any

from distil.fsutil import atomic_write_text

PROMPT, SYSTEM = "\x00PROMPT\x00", "\x00SYSTEM\x00"


def ollama_template(tokenizer: Any) -> str | None:
    """The Go template equivalent to the chat template for one turn, or None without one."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    user = _render(tokenizer, [{"role": "user", "content": PROMPT}])
    if user is None or user.count(PROMPT) != 1:
        return None
    template = user.replace(PROMPT, "{{ .Prompt }}")
    both = _render(tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])
    if both and both.endswith(user) and both.count(SYSTEM) == 1:
        system = both[: -len(user)].replace(SYSTEM, "{{ .System }}")
        template = "{{ if .System }}" + system + "{{ end }}" + template
    return template


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that refuses a role (say, system) is simply not used for it
        return None


def modelfile_text(gguf_name: str, tokenizer: Any, card: str | None = None) -> str:
    """The Modelfile: FROM the GGUF, its prompt template, stop token and greedy decoding."""
    lines = ["# Run with Ollama: ollama create NAME -f Modelfile && ollama run NAME"]
    if card:
        lines.append(f"# Model card: {card}")
    lines.append(f"FROM ./{gguf_name}")
    template = ollama_template(tokenizer)
    if template is not None:
        lines.append(f'TEMPLATE """{template}"""')
    eos = getattr(tokenizer, "eos_token", None)
    if eos:
        lines.append(f'PARAMETER stop "{eos}"')
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def write_modelfile(path: str | Path, gguf_name: str, tokenizer: Any, card: str | None = None) -> Path:
    """Write `modelfile_text` to `path` atomically."""
    atomic_write_text(path, modelfile_text(gguf_name, tokenizer, card))
    return Path(path)
