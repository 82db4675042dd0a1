"""distil from Python: a recipe (or keyword settings) plus models and data held in memory.

    from distil import Distiller
    distiller = Distiller(teacher=teacher_model, student="tiny-student", tokenizer=tokenizer,
                          train_dataset=dataset, output_dir="runs/notebook",
                          train={"max_steps": 50}, callbacks=[Printer()])
    result = distiller.train()          # = distil train (resume=True: continue its checkpoints)
    metrics = distiller.evaluate()      # = distil eval
    distiller.run()                     # = distil run: every stage the recipe enables

The stages, checkpoints, fingerprints and resume rules are the command line's own: a
Distiller only builds the recipe. A model or dataset passed as an object is named by its
content (distil.inmemory: the weights' hash, datasets' fingerprint), so a rerun with the
same objects resumes or skips as the CLI would, and changed weights or rows redo what read
them. An `IterableDataset` is read as a stream (data.streaming). Callbacks hear of each log
line, held-out evaluation and checkpoint (distil.train.callbacks). Everything runs in this
process: objects in memory cannot reach the processes of a multi-process launch.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distil import inmemory
from distil.errors import DataError, ModelError
from distil.fsutil import atomic_write_json
from distil.recipe import Recipe, read_recipe, validate_recipe
from distil.train import TrainResult, run_training
from distil.train.stage import check_run_folder

MEMORY_INPUTS = "memory_inputs.json"
"""What the objects passed in memory were, written into the run folder."""


class Distiller:
    """One run folder's distillation, driven from Python (see the module docstring)."""

    def __init__(
        self,
        recipe: str | Path | dict[str, Any] | Recipe | None = None,
        *,
        teacher: Any = None,
        student: Any = None,
        tokenizer: Any = None,
        teacher_tokenizer: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        callbacks: Sequence[Any] = (),
        **settings: Any,
    ) -> None:
        """`recipe`: a YAML file, a mapping or a Recipe; `settings`: recipe keys laid over it
        (`output_dir="runs/x"`, `train={"max_steps": 50}`: sections merge key by key).
        `teacher`/`student`: a transformers model (with `tokenizer`, and `teacher_tokenizer`
        where the teacher's differs) or anything a recipe's `model` takes. `train_dataset` /
        `eval_dataset`: a datasets.Dataset or IterableDataset, a list of row dicts, or a
        path. `callbacks`: objects with on_log / on_evaluate / on_save."""
        if tokenizer is not None and all(m is None or _is_path(m) for m in (teacher, student)):
            raise ModelError(
                "tokenizer= goes with a model passed as an object (teacher= or "
                "student=); a model named by a path loads its own"
            )
        raw = _raw_recipe(recipe)
        _merge(raw, settings)
        self._held: list[inmemory.Held] = []  # keeps the memory: names alive
        self._place_model(raw, "teacher", teacher, teacher_tokenizer or tokenizer)
        self._place_model(raw, "student", student, tokenizer)
        self._place_data(raw, "train", train_dataset)
        self._place_data(raw, "eval", eval_dataset)
        source = str(recipe) if isinstance(recipe, (str, Path)) else "Distiller settings"
        self.recipe = validate_recipe(raw, source=source)
        self.callbacks = list(callbacks)

    @property
    def run_dir(self) -> Path:
        """The run folder every stage writes into."""
        return self.recipe.run_dir

    def train(self, resume: bool | Path = False, restart: bool = False) -> TrainResult:
        """`distil train`: train the student into RUN/student. `resume`: continue this run's
        checkpoints (True: the newest; a path: that one); without it a run folder holding
        checkpoints is refused. `restart`: set checkpoints of other inputs aside."""
        self._record_inputs()
        result = run_training(self.recipe, resume=resume, restart=restart, callbacks=self.callbacks)
        assert result is not None  # trained in this process
        return result

    def evaluate(self) -> dict[str, Any]:
        """`distil eval`: the trained student against the teacher on held-out rows
        (RUN/eval.json, returned)."""
        from distil.evaluate import evaluate

        return evaluate(self.recipe)

    def run(self, force: bool = False, restart: bool = False, resume_from: Path | None = None) -> list[str]:
        """`distil run`: every stage the recipe enables, finished ones skipped; returns the
        exported variants that failed parity (see distil.pipeline.run_pipeline)."""
        from distil.pipeline.run import run_pipeline

        self._record_inputs()
        return run_pipeline(
            self.recipe, force=force, restart=restart, resume_from=resume_from, callbacks=self.callbacks
        )

    def load_student(self) -> Any:
        """The trained student (RUN/student) as a transformers model."""
        from distil.models import load_model

        folder = self.run_dir / "student"
        if not folder.is_dir():
            raise ModelError(f"no trained student in {folder}; call train() or run() first")
        return load_model(str(folder), "student").model

    def _place_model(self, raw: dict[str, Any], role: str, model: Any, tokenizer: Any) -> None:
        if model is None:
            return
        if _is_path(model):
            name = str(model)
        else:
            held = inmemory.hold_model(model, tokenizer)
            self._held.append(held)
            name = held.name
        raw.setdefault(role, {})["model"] = name

    def _place_data(self, raw: dict[str, Any], key: str, dataset: Any) -> None:
        if dataset is None:
            return
        data = raw.setdefault("data", {})
        if _is_path(dataset):
            data[key] = str(dataset)
            return
        if isinstance(dataset, list):
            dataset = _from_rows(dataset)
        held = inmemory.hold_dataset(dataset)
        self._held.append(held)
        data[key] = held.name
        if held.description["kind"] == "stream":
            data.setdefault("streaming", True)
            if data["streaming"] is not True:
                raise DataError(
                    f"{key}_dataset is an IterableDataset, read only as a stream; "
                    "leave data.streaming unset (or true), or pass a Dataset"
                )

    def _record_inputs(self) -> None:
        """RUN/memory_inputs.json: what each object passed in memory was."""
        if not self._held:
            return
        check_run_folder(self.run_dir)
        atomic_write_json(self.run_dir / MEMORY_INPUTS, {held.name: held.description for held in self._held})


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, Path))


def _raw_recipe(recipe: str | Path | dict[str, Any] | Recipe | None) -> dict[str, Any]:
    """The recipe as a mapping to lay settings over."""
    if recipe is None:
        return {}
    if isinstance(recipe, Recipe):
        return recipe.model_dump(mode="json", exclude_unset=True)
    if isinstance(recipe, dict):
        return _copy_tree(recipe)
    return read_recipe(recipe)


def _merge(raw: dict[str, Any], settings: dict[str, Any]) -> None:
    """Lay `settings` over `raw`: mappings merge key by key, anything else replaces."""
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            _merge(raw[key], value)
        else:
            raw[key] = _copy_tree(value) if isinstance(value, dict) else value


def _copy_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _from_rows(rows: list[Any]) -> Any:
    """A list of row dicts as a datasets.Dataset."""
    import datasets

    if not rows or not all(isinstance(row, dict) for row in rows):
        raise DataError(
            "a dataset passed as a list must hold row dicts ({'prompt': ..., "
            "'response': ...} or {'messages': [...]}), at least one"
        )
    return datasets.Dataset.from_list(rows)
