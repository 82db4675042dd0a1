"""What an audit is asked: one settings model per mode, every field and default written once.

    settings = TextAudit(files=[Path("answers.jsonl")], key_env="DISTIL_WATERMARK_KEY")
    settings = ModelAudit(model="runs/demo/student", top_k=3)
    settings = ApiAudit(url="http://127.0.0.1:8000/v1", model="demo", max_tokens=48)

`distil audit text|model|api` builds its options from these fields (their docstrings are
the help), so a value out of range is refused here, before a file is read, a model loaded or
a request sent. The watermark's defaults are those `distil serve --watermark` marks with
(`distil.provenance.WatermarkSpec`). Nothing here imports numpy or torch.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from distil.errors import DistilError
from distil.provenance.spec import KEY_ENV, Scheme, WatermarkSpec
from distil.recipe.section import EnvName, HttpUrl


class AuditError(DistilError):
    """An audit cannot run as asked: an option out of range, a key variable not set."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class AuditSettings(_Settings):
    """What every audit shares: the key, the watermark tested for, its null, the verdict's
    level and where it is written."""

    key_env: EnvName = KEY_ENV
    """Environment variable holding the watermark key (its name; the key itself is never
    passed or written)."""
    scheme: Scheme = WatermarkSpec.scheme
    """The watermark's scheme (serve --watermark-scheme): kgw or exp-min."""
    gamma: float = Field(WatermarkSpec.gamma, gt=0, lt=1)
    """The watermark's green share (serve --watermark-gamma; kgw only)."""
    context_width: int = Field(WatermarkSpec.context_width, ge=1)
    """The watermark's context width (serve --watermark-context-width)."""
    null_keys: int = Field(200, ge=0)
    """Random keys the same test runs under, for the empirical null (0: none)."""
    alpha: float = Field(1e-3, gt=0, lt=1)
    """Level below which the p-value flags a watermark."""
    seed: int = Field(0, ge=0)
    """Seed of the null's random keys and of the held-out task items."""
    out: Path = Path("audit")
    """Folder for audit.json and audit.md."""

    @property
    def spec(self) -> WatermarkSpec:
        """The watermark's public settings."""
        return WatermarkSpec(gamma=self.gamma, context_width=self.context_width, scheme=self.scheme)


class _ReadsRows(_Settings):
    field: str | None = Field(None, min_length=1)
    """Column of .jsonl/.parquet rows holding the text. Default: response, text or completion."""


class _Tokenizes(_Settings):
    tokenizer: str = Field("demo", min_length=1)
    """The watermarked model's tokenizer: a folder, hub id or demo."""


class TextAudit(AuditSettings, _Tokenizes, _ReadsRows):
    """`distil audit text`: test texts, per document and pooled, de-duplicated."""

    files: list[Path] = Field(min_length=1)
    """.txt, .jsonl or .parquet files."""


class ModelAudit(AuditSettings, _ReadsRows):
    """`distil audit model`: teacher-force a model with open weights, test its predictions."""

    model: str = Field(min_length=1)
    """Folder of the model (open weights)."""
    corpus: list[Path] = []
    """Unmarked text to teacher-force it on (repeat for several)."""
    tasks: int = Field(100, ge=1)
    """Without a corpus: this many held-out items of every task family."""
    top_k: int = Field(1, ge=1)
    """Predictions scored per position (1: the top-1 test)."""


class ApiAudit(AuditSettings, _Tokenizes):
    """`distil audit api`: prompt a model behind an API, test what it generates."""

    url: HttpUrl
    """Base URL of the OpenAI-compatible API (.../v1)."""
    model: str = Field(min_length=1)
    """Served model name."""
    prompts: Path | None = None
    """Prompts to send (.txt: one prompt; .jsonl: a prompt field per line). Default: held-out
    task prompts."""
    tasks: int = Field(20, ge=1)
    """Without a prompts file: this many held-out items of every task family."""
    api_key_env: EnvName | None = None
    """Environment variable holding the API's key. Default: none sent."""
    max_tokens: int = Field(48, ge=1)
    """Most tokens generated per prompt."""
    temperature: float = Field(1.0, ge=0, le=2)
    """Sampling temperature (0: greedy; an exp-min watermark marks sampled text only)."""
