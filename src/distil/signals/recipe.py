"""The signal store as a recipe sees it: where it lives, what identity it must carry, and
opening it for training (refusing a store captured under other settings).

The capture stage writes stores through these functions and the train stage reads them,
so neither stage needs the other.
"""

from pathlib import Path
from typing import Any

from distil.models import BUILTIN_MODELS, LoadedModel, model_revision, output_vocab_size
from distil.recipe import Recipe
from distil.signals.errors import FingerprintMismatchError, SignalsError
from distil.signals.fingerprint import differences, recipe_identity
from distil.signals.reader import SignalStore
from distil.signals.training import StoredTeacher


def capture_dir(recipe: Recipe) -> Path:
    """Where `distil capture` writes: capture.output, or RUN/signals."""
    return Path(recipe.capture.output) if recipe.capture.output else recipe.run_dir / "signals"


def training_store_dir(recipe: Recipe) -> Path | None:
    """The store a recipe trains from (signals.path, `capture` meaning capture_dir), or None."""
    path = recipe.signals.path
    if path is None:
        return None
    return capture_dir(recipe) if path == "capture" else Path(path)


def capture_temperature(recipe: Recipe) -> float:
    """The temperature of the stored distributions: the recipe's one, distill.temperature."""
    return recipe.distill.temperature


def teacher_identity(recipe: Recipe) -> dict[str, Any]:
    """The teacher signals come from: its name, what pins its weights (the hub revision, or a
    GGUF file's `sha256:<hex>`) and, for a built-in random model, the seed that made it."""
    teacher = recipe.teacher
    served = teacher.api is not None  # then `model` is a name on the server
    revision = teacher.revision if served else model_revision(teacher.model, teacher.revision)
    seed = recipe.seed if teacher.model in BUILTIN_MODELS else None
    return {"model": teacher.model, "revision": revision, "seed": seed}


def signal_identity(recipe: Recipe, tokenizer: Any, temperature: float) -> dict[str, Any]:
    """The fingerprint fields the recipe decides (teacher, tokens, temperature)."""
    template = recipe.data.template
    chat = template == "chat" or (template == "auto" and bool(getattr(tokenizer, "chat_template", None)))
    return recipe_identity(
        teacher=teacher_identity(recipe),
        tokenizer=tokenizer,
        template="chat" if chat else "plain",
        max_length=recipe.data.max_length,
        temperature=temperature,
    )


def training_signals(recipe: Recipe, student: LoadedModel) -> StoredTeacher:
    """Open the recipe's store for training; refuse one captured under other settings."""
    path = training_store_dir(recipe)
    if path is None:
        raise SignalsError("signals.path is empty; set it to a store, or train with a live teacher")
    store = SignalStore(path)
    wanted = signal_identity(recipe, student.tokenizer, recipe.distill.temperature)
    problems = differences(store.fingerprint, wanted)
    width, encoding = output_vocab_size(student.model), store.encoding
    if encoding.vocab_size > width:
        problems.append(
            f"vocab_size: store has {encoding.vocab_size} columns, the student's head only {width}"
        )
    if recipe.signals.top_k and recipe.signals.top_k > encoding.top_k:
        problems.append(f"top_k: store has {encoding.top_k}, signals.top_k asks for {recipe.signals.top_k}")
    if problems:
        store.close()
        raise FingerprintMismatchError(
            f"the signals in {path} do not fit this recipe ({'; '.join(problems)}); capture "
            "again with `distil capture RECIPE` into a new capture.output, or point "
            "signals.path at a store captured for this recipe"
        )
    return StoredTeacher(store, recipe.signals.top_k)
