"""The recipe: one YAML file that drives a run, as typed sections.

Each section is a pydantic model; each field is documented once, by the docstring under
it, and that text is what `distil recipe docs` prints. `load_recipe` reads the YAML,
applies `key.sub=value` overrides, resolves relative paths against the recipe's folder and
validates; every problem becomes a `RecipeError` naming the field and the fix.

    recipe = load_recipe("recipes/tiny.yaml", ["train.max_steps=20"])
"""

import difflib
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from distil.errors import RecipeError
from distil.recipe_api import ApiSection
from distil.recipe_edge import BenchConfig, ExportConfig
from distil.recipe_synth import SynthSection
from distil.section import PositiveFloat, Probability, Section

Divergence = Literal[
    "forward_kl", "reverse_kl", "generalized_jsd", "skew_forward_kl", "skew_reverse_kl", "tvd"
]


class ModelSpec(Section):
    """A causal language model to load."""

    model: str
    """A local folder in Hugging Face format, a hub id (`org/name`), `demo` (the shipped demo
    teacher), or `tiny-teacher` / `tiny-student` (small random models built in-process)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; ignored for local folders."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype on load. `auto`: a teacher uses bfloat16 on a GPU that has it, float32
    otherwise; a student (trained) stays float32 and mixed precision is train.mixed_precision."""
    trust_remote_code: bool = False
    """Run modelling code shipped with a hub model. Off unless you trust its author."""
    layers: list[int] | None = None
    """Student only: keep just these decoder layers (0-based) of the loaded model, e.g. [0, 5],
    so a shallower student starts from the teacher's own weights."""


class TeacherSpec(ModelSpec):
    """The teacher: a model to load, or one served behind an API."""

    api: ApiSection | None = None
    """Reach the teacher through an OpenAI-compatible API instead of loading it (`model` is
    then the served model name). Such a teacher gives text and top-k logprobs, never full
    logits."""


class DataSection(Section):
    """Prompt/response pairs to distil on."""

    train: str | None = None
    """Parquet or JSONL file (or a folder of `.parquet` shards) with one prompt/response pair per row.
    Required, except with a synth: section, where it defaults to RUN/data/train.parquet."""
    eval: str | None = None
    """Held-out file in the same format. When empty, `eval_fraction` of `train` is held out."""
    eval_fraction: Probability = 0.05
    """Share of `train` rows held out for evaluation when `eval` is not given (seeded split)."""
    prompt_field: str = "prompt"
    """Column holding the prompt (user message)."""
    response_field: str = "response"
    """Column holding the response the student is trained on (teacher text or reference)."""
    max_length: Annotated[int, Field(ge=8)] = 512
    """Longest prompt+response in tokens; longer rows are cut from the end of the response."""
    template: Literal["auto", "chat", "plain"] = "auto"
    """How a prompt is rendered: `chat` applies the tokenizer's chat template, `plain` uses the
    text as is, `auto` picks `chat` when the tokenizer has a template."""


class DistillSection(Section):
    """The objective: kd_weight * T^2 * divergence + ce_weight * cross-entropy, per response token."""

    divergence: Divergence = "forward_kl"
    """Divergence between the temperature-softened teacher and student distributions."""
    beta: Probability = 0.5
    """Interpolation of `generalized_jsd`: 0 is forward KL, 1 is reverse KL."""
    alpha: Probability = 0.1
    """Skew of `skew_forward_kl` / `skew_reverse_kl` (share of the divergence's own side in the mixture)."""
    temperature: PositiveFloat = 1.0
    """Softmax temperature T applied to both teacher and student logits before the divergence."""
    kd_weight: Annotated[float, Field(ge=0)] = 1.0
    """Weight of the divergence term; it is also multiplied by T^2 so gradients keep their scale."""
    ce_weight: Annotated[float, Field(ge=0)] = 0.0
    """Weight of the hard-label cross-entropy on the response tokens (at temperature 1)."""
    fused: Literal["auto", "always", "never"] = "auto"
    """Chunked fused-linear path that never holds all (tokens, vocab) logits at once. `auto` uses
    it whenever both models are live and expose a plain linear output head."""
    chunk_size: Annotated[int, Field(ge=1)] | None = None
    """Tokens per chunk on the fused path; empty picks one from the vocabulary size."""

    @model_validator(mode="after")
    def _some_signal(self) -> "DistillSection":
        if self.kd_weight == 0 and self.ce_weight == 0:
            raise ValueError("kd_weight and ce_weight are both 0: set at least one above 0")
        return self


class TrainSection(Section):
    """Optimisation."""

    max_steps: Annotated[int, Field(ge=1)] | None = None
    """Optimizer steps to run. When empty, `epochs` passes over the training rows decide."""
    epochs: PositiveFloat = 1.0
    """Passes over the training rows, used when `max_steps` is empty."""
    batch_size: Annotated[int, Field(ge=1)] = 8
    """Rows per micro-batch (per process)."""
    grad_accum: Annotated[int, Field(ge=1)] = 1
    """Micro-batches per optimizer step; the loss is a mean over all their response tokens."""
    learning_rate: PositiveFloat = 1e-4
    """Peak AdamW learning rate, reached after warm-up and then decayed on a cosine to 0."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    """AdamW decoupled weight decay."""
    warmup_ratio: Probability = 0.05
    """Share of steps spent warming the learning rate up linearly from 0."""
    max_grad_norm: Annotated[float, Field(ge=0)] = 1.0
    """Clip the gradient's global norm to this value; 0 turns clipping off."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Autocast precision. `auto` is bf16 on a GPU that supports it and fp32 elsewhere."""
    save_every: Annotated[int, Field(ge=1)] = 100
    """Write a resumable checkpoint every this many optimizer steps (and at the end)."""
    keep_checkpoints: Annotated[int, Field(ge=1)] = 2
    """How many of the newest checkpoints to keep on disk."""
    log_every: Annotated[int, Field(ge=1)] = 10
    """Append the loss and throughput to train_log.jsonl every this many steps."""


class EvalSection(Section):
    """Held-out evaluation of the student against the teacher."""

    batch_size: Annotated[int, Field(ge=1)] = 16
    """Rows per evaluation batch."""
    max_samples: Annotated[int, Field(ge=1)] | None = 256
    """Evaluate on at most this many held-out rows; empty uses all of them."""
    tasks: list[str] = []
    """Task families (`distil.tasks`, or `all`) whose held-out prompts teacher and student answer
    by greedy generation, graded by each family's checker; empty: no task accuracy."""
    per_task: Annotated[int, Field(ge=1)] = 50
    """Held-out prompts per task family."""
    max_new_tokens: Annotated[int, Field(ge=1)] = 64
    """Longest generated answer, in tokens."""
    generation_batch_size: Annotated[int, Field(ge=1)] = 64
    """Prompts generated together (batched, with a KV cache)."""


class CaptureSection(Section):
    """Capturing the teacher's top-k distributions once (`distil capture`), to train from disk."""

    top_k: Annotated[int, Field(ge=1)] = 32
    """Entries kept per response token: the k most likely token ids and their log-probabilities;
    the probability outside them is kept as one number (the tail mass)."""
    temperature: PositiveFloat | None = None
    """Temperature of the stored distributions (softmax(logits / T)). Empty means
    distill.temperature; training refuses a store whose temperature differs from its own."""
    logprob_dtype: Literal["float32", "float16", "uint8"] = "float16"
    """How log-probabilities are stored: `float32` exact (4 bytes), `float16` (2 bytes), `uint8`
    (1 byte, fourth-root companded probability); see docs/signals-format.md for the errors."""
    batch_size: Annotated[int, Field(ge=1)] = 8
    """Rows per teacher forward pass."""
    shard_tokens: Annotated[int, Field(ge=1)] = 262144
    """Tokens per shard file. Shards are written whole, so a killed capture loses at most the
    shard it was filling; the next `distil capture` captures only the rows not yet stored."""
    output: str | None = None
    """Folder of the signal store. Empty means RUN/signals (RUN being the run folder)."""
    source: Literal["auto", "local", "score", "generation"] = "auto"
    """Where the distributions come from. `local`: the teacher model run in process
    (white-box, any k and temperature). `score`: an API teacher scores each training response
    (echo + logprobs). `generation`: the top logprobs an API teacher returned while generating,
    kept by synth (synth.sampling.top_logprobs >= capture.top_k); no request is sent. `auto`:
    local without teacher.api; with it, score when the endpoint can, else generation."""


class SignalsSection(Section):
    """Training from a captured teacher-signal store instead of a live teacher."""

    path: str | None = None
    """Store to train from: a folder written by `distil capture`, or `capture` for this recipe's
    own capture.output. When set, training loads no teacher. Empty trains from the live teacher."""
    top_k: Annotated[int, Field(ge=1)] | None = None
    """Use only this many of the most likely stored entries per token (the others join the tail
    mass), e.g. to compare k = 8 and k = 32 from one k = 32 store. Empty uses all of them."""


class Recipe(Section):
    """A whole distillation job."""

    name: str = "run"
    """Name of the run; the default output folder is runs/NAME."""
    output_dir: str | None = None
    """Run folder for checkpoints, logs and results. Empty means runs/NAME (from the working folder)."""
    seed: int = 0
    """Seed for data order, held-out split, initialisation and sampling."""
    teacher: TeacherSpec
    """The model whose distributions the student learns."""
    student: ModelSpec
    """The model being trained; it must share the teacher's vocabulary."""
    data: DataSection = DataSection()
    """Where the prompt/response pairs come from."""
    distill: DistillSection = DistillSection()
    """The distillation objective."""
    train: TrainSection = TrainSection()
    """Optimiser, schedule and checkpoints."""
    eval: EvalSection = EvalSection()
    """Held-out evaluation."""
    compare: bool = False
    """Also train the same student on the same prompts with sequence-level KD (teacher text,
    hard labels only) and on the tasks' ground truth alone, and report the three side by side."""
    synth: SynthSection | None = None
    """Generate the training data with the teacher first (stage `synth`, before `train`)."""
    capture: CaptureSection = CaptureSection()
    """Capturing teacher signals to disk (`distil capture`)."""
    signals: SignalsSection = SignalsSection()
    """Training from captured teacher signals instead of a live teacher."""
    export: ExportConfig | None = None
    """Export the trained student (safetensors, ONNX, int8 ONNX) and check each file against
    PyTorch (stage `export`, after `eval`). Empty skips the stage; `distil export` runs it alone."""
    bench: BenchConfig | None = None
    """Time teacher, student and exported variants on CPU into eval.json (stage `bench`, after
    `export`). Empty skips the stage; `distil bench` runs it alone."""

    @model_validator(mode="after")
    def _teacher_is_whole(self) -> "Recipe":
        if self.teacher.layers is not None:
            raise ValueError("teacher.layers is for students only; remove it from teacher")
        return self

    @model_validator(mode="after")
    def _api_teacher_fits(self) -> "Recipe":
        if self.teacher.api is not None and self.distill.kd_weight > 0 and self.signals.path is None:
            raise ValueError(
                "teacher.api: a teacher behind an API gives no full logits, so live-logit "
                "distillation (distill.kd_weight > 0) is impossible; capture its top-k logprobs "
                "first and train from them (signals.path: capture), or set distill.kd_weight=0 "
                "and distill.ce_weight=1 to train on the teacher's text (sequence-level KD)")
        return self

    @model_validator(mode="after")
    def _data_from_synth(self) -> "Recipe":
        if self.data.train is None:
            if self.synth is None:
                raise ValueError("data.train is required (a prompt/response file), unless a "
                                 "synth: section generates it")
            self.data.train = str(self.run_dir / "data" / "train.parquet")
        return self

    @property
    def run_dir(self) -> Path:
        """The folder every stage of this recipe reads and writes."""
        return Path(self.output_dir or os.path.join("runs", self.name))


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Read, override, resolve and validate a recipe; raise `RecipeError` on any problem."""
    path = Path(path)
    raw = _read_yaml(path)
    for override in overrides or []:
        _apply_override(raw, override)
    _resolve_paths(raw, path.parent)
    return validate_recipe(raw, source=str(path))


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a recipe mapping, turning pydantic's errors into one readable `RecipeError`."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e) for e in err.errors()]
        raise RecipeError(f"{source}: " + "; ".join(problems)) from None


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML, every field spelled out (what a run actually used)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}; pass the path of a YAML recipe, "
                          "e.g. recipes/tiny.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RecipeError(f"{path} is not valid YAML{at}: {problem}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path} must hold a YAML mapping of sections (teacher:, student:, "
                          "data:, ...), not {type(raw).__name__}")
    return raw


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {override!r} is not of the form key.sub=value, "
                          "e.g. train.max_steps=100")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise RecipeError(f"override {override!r}: {where} is a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        node[parts[-1]] = value


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make data paths, and model paths that exist there, relative to the recipe's folder."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "eval"):
            value = data.get(key)
            if isinstance(value, str) and not os.path.isabs(value) and (base / value).exists():
                data[key] = str(base / value)
    for role in ("teacher", "student"):
        spec = raw.get(role)
        if isinstance(spec, dict) and isinstance(spec.get("model"), str):
            value = spec["model"]
            if not os.path.isabs(value) and (base / value).is_dir():
                spec["model"] = str(base / value)
    _resolve_nested(raw, ("synth", "prompts", "file"), base)
    _resolve_nested(raw, ("teacher", "api", "tokenizer"), base)


def _resolve_nested(raw: dict[str, Any], keys: tuple[str, ...], base: Path) -> None:
    """Make the path at raw[k1][k2]... relative to the recipe's folder when it exists there."""
    node: Any = raw
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    value = node.get(keys[-1]) if isinstance(node, dict) else None
    if isinstance(value, str) and not os.path.isabs(value) and (base / value).exists():
        node[keys[-1]] = str(base / value)


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "recipe"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where}{_suggestion(error['loc'])}; remove it or fix its spelling"
    if error["type"] == "missing":
        return f"{where} is required; add it (see `distil recipe docs`)"
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a check across sections: its message names the fields
        return message
    if error["type"] == "secret_value":  # never echo what may be a secret
        return f"{where}: {message}"
    return f"{where}: {message} (got {error.get('input')!r})"


def _suggestion(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        section = section_model(getattr(field, "annotation", None))
        if section is None:
            return ""
        model = section
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def recipe_reference() -> str:
    """Markdown reference of every recipe field, built from the field docstrings."""
    lines = ["# Recipe reference", "",
             "Generated by `distil recipe docs` from the field docstrings in `distil/recipe.py`.", ""]
    for name, field in Recipe.model_fields.items():
        section = section_model(field.annotation)
        if section is not None:
            lines += [f"## `{name}`", "", field.description or "", ""]
            lines += _field_table(section.model_fields, prefix=f"{name}.")
    lines += ["## Top level", ""]
    top = {k: v for k, v in Recipe.model_fields.items() if section_model(v.annotation) is None}
    lines += _field_table(top, prefix="")
    return "\n".join(lines) + "\n"


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The section model of a field typed `Section` or `Section | None`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], BaseModel):
        return members[0]
    return None


def _field_table(fields: dict[str, Any], prefix: str) -> list[str]:
    return ["| key | default | meaning |", "| --- | --- | --- |", *_field_rows(fields, prefix), ""]


def _field_rows(fields: dict[str, Any], prefix: str) -> list[str]:
    """One row per field; a nested section is followed by a row for each of its fields."""
    rows, nested = [], []
    for name, field in fields.items():
        section = section_model(field.annotation)
        text = " ".join((field.description or "").split()).replace("|", "\\|")
        if section is not None:
            default = "`None`" if field.default is None else "section"
            nested.append((f"{prefix}{name}.", section))
        else:
            default = "required" if field.is_required() else f"`{field.default!r}`"
        rows.append(f"| `{prefix}{name}` | {default} | {text} |")
    for sub_prefix, section in nested:
        rows += _field_rows(section.model_fields, sub_prefix)
    return rows
