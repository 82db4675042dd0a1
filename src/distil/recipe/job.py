"""The whole recipe: every section, and the checks that span several of them.

The checks between the teacher and the training settings (an API teacher with live-logit
distillation, hidden states or a temperature it cannot give) hold for the commands that
train or capture for training. `distil synth` validates with `{"training": False}` as
pydantic's context (`load_recipe(..., training=False)`), so a recipe that only cannot
*train* as written can still synthesise its data.
"""

import os
from pathlib import Path

from pydantic import ValidationInfo, model_validator

from distil.recipe.bench import BenchSection
from distil.recipe.capture import CaptureSection
from distil.recipe.compare import CompareSection
from distil.recipe.cross_tokenizer import CrossTokenizerSection
from distil.recipe.data import DataSection
from distil.recipe.evaluate import EvalSection
from distil.recipe.export import ExportSection
from distil.recipe.models import StudentSection, TeacherSection
from distil.recipe.section import Section, StageInputs
from distil.recipe.signal import teacher_signal
from distil.recipe.synth import SynthSection
from distil.recipe.train import DistillSection, SignalsSection, TrainSection


def for_training(info: ValidationInfo) -> bool:
    """Whether the recipe is validated for a command that trains (all but `distil synth`)."""
    return bool((info.context or {}).get("training", True))


class Recipe(Section):
    """A whole distillation job."""

    name: str = "run"
    """Name of the run; the default output folder is runs/NAME."""
    output_dir: str | None = None
    """Run folder for checkpoints, logs and results. Empty means runs/NAME (from the working folder)."""
    seed: int = 0
    """Seed for data order, held-out split, initialisation and sampling."""
    teacher: TeacherSection
    """The model whose distributions the student learns."""
    student: StudentSection
    """The model being trained; it must share the teacher's vocabulary unless
    cross_tokenizer.method is set."""
    data: DataSection = DataSection()
    """Where the prompt/response pairs come from."""
    distill: DistillSection = DistillSection()
    """The distillation objective."""
    train: TrainSection = TrainSection()
    """Optimiser, schedule and checkpoints."""
    eval: EvalSection = EvalSection()
    """Held-out evaluation."""
    compare: bool = False
    """Also train the same student on the same prompts for the same steps by other methods
    (`comparison`: ground truth, sequence-level KD, logit KD, on-policy, ...), over several
    seeds, and report each method's mean held-out accuracy with its 95% interval."""
    comparison: CompareSection = CompareSection()
    """What `compare` trains: the methods, the seeds of each, and the shares of the prompts
    of the data-efficiency curve."""
    synth: SynthSection | None = None
    """Generate the training data with the teacher first (stage `synth`, before `train`)."""
    capture: CaptureSection = CaptureSection()
    """Capturing teacher signals to disk (`distil capture`)."""
    signals: SignalsSection = SignalsSection()
    """Training from captured teacher signals instead of a live teacher."""
    cross_tokenizer: CrossTokenizerSection = CrossTokenizerSection()
    """A teacher whose tokenizer differs from the student's."""
    export: ExportSection | None = None
    """Export the trained student (safetensors, ONNX, int8 ONNX) and check each file against
    PyTorch (stage `export`, after `eval`). Empty skips the stage; `distil export` runs it alone."""
    bench: BenchSection | None = None
    """Time teacher, student and exported variants on CPU into eval.json (stage `bench`, after
    `export`). Empty skips the stage; `distil bench` runs it alone."""

    @model_validator(mode="after")
    def _teacher_is_whole(self) -> "Recipe":
        if self.teacher.layers is not None:
            raise ValueError("teacher.layers is for students only; remove it from teacher")
        return self

    @model_validator(mode="after")
    def _api_teacher_fits(self, info: ValidationInfo) -> "Recipe":
        if not for_training(info):
            return self
        signal = teacher_signal(self)
        if signal.api and signal.source in ("live", "cross-live"):
            raise ValueError(
                "teacher.api: a teacher behind an API gives no full logits, so live-logit "
                "distillation (distill.kd_weight > 0) is impossible; capture its top-k logprobs "
                "first and train from them (signals.path: capture), or set distill.kd_weight=0 "
                "and distill.ce_weight=1 to train on the teacher's text (sequence-level KD)"
            )
        return self

    @model_validator(mode="after")
    def _live_teacher_terms(self, info: ValidationInfo) -> "Recipe":
        if not for_training(info):
            return self
        signal = teacher_signal(self)
        if signal.hidden and signal.from_store:
            raise ValueError(
                "distill.hidden.weight > 0 matches the teacher's hidden states, but a signal "
                "store (signals.path) holds none; set signals.path empty to train from the live "
                "teacher, or distill.hidden.weight=0"
            )
        if signal.cross and (signal.hidden or signal.on_policy != "off"):
            raise ValueError(
                f"cross_tokenizer.method={self.cross_tokenizer.method}: a teacher of another "
                "tokenizer is not combined with distill.hidden or distill.on_policy yet; set "
                "distill.hidden.weight=0 and distill.on_policy.lmbda=0, or cross_tokenizer.method=off"
            )
        if signal.api and signal.hidden:
            raise ValueError(
                "distill.hidden needs a local teacher's hidden states; a teacher behind "
                "teacher.api cannot give them: set distill.hidden.weight=0, or name a local "
                "teacher model"
            )
        return self

    @model_validator(mode="after")
    def _api_logprobs_at_temperature_one(self, info: ValidationInfo) -> "Recipe":
        if not for_training(info):
            return self
        if teacher_signal(self).at_temperature_one and self.distill.temperature != 1:
            raise ValueError(
                f"distill.temperature={self.distill.temperature}: a teacher behind an API returns "
                "its top-k logprobs at temperature 1 and the mass outside them as one number, so "
                "they cannot be re-softened; set distill.temperature: 1 (or capture a local "
                "teacher with capture.source: local)"
            )
        return self

    @model_validator(mode="after")
    def _api_teacher_own_tokens(self, info: ValidationInfo) -> "Recipe":
        if not for_training(info):
            return self
        signal = teacher_signal(self)
        if (
            signal.own_capture
            and signal.cross
            and signal.capture_via_api
            and self.capture.source == "generation"
        ):
            raise ValueError(
                f"capture.source=generation with cross_tokenizer.method="
                f"{self.cross_tokenizer.method}: a teacher behind an API is captured on its own "
                "tokens by scoring each training response, not from the logprobs kept while "
                "generating; set capture.source: score (or auto), or capture.source: local to run "
                "teacher.model in process"
            )
        return self

    @model_validator(mode="after")
    def _streaming_fits(self, info: ValidationInfo) -> "Recipe":
        if not (self.data.streaming and for_training(info)):
            return self
        signal = teacher_signal(self)
        needs_all = [
            what
            for what, needed in (
                ("signals.path (a store is checked against every row first)", signal.from_store),
                ("cross_tokenizer (aligns every row first)", signal.cross),
                ("on-policy scoring through teacher.api", signal.on_policy == "api"),
                ("compare (trains several students on the rows in memory)", self.compare),
            )
            if needed
        ]
        if needs_all:
            raise ValueError(
                f"data.streaming reads the rows while training, but {needs_all[0]} "
                "needs them all in memory; set data.streaming: false"
            )
        return self

    @model_validator(mode="after")
    def _synth_generator_is_local(self) -> "Recipe":
        if self.synth is not None and self.teacher.api is not None and self.synth.generator != "hf":
            raise ValueError(
                f"synth.generator={self.synth.generator} picks the engine of a local "
                "teacher; a teacher behind teacher.api generates on its server: "
                "remove synth.generator"
            )
        return self

    @model_validator(mode="after")
    def _data_from_synth(self) -> "Recipe":
        if self.data.train is None:
            if self.synth is None:
                raise ValueError(
                    "data.train is required (a prompt/response file), unless a synth: section generates it"
                )
            self.data.train = str(self.run_dir / "data" / "train.parquet")
        return self

    @model_validator(mode="after")
    def _export_grades_what_eval_grades(self) -> "Recipe":
        """Parity grades the task families the recipe evaluates, and no other."""
        if self.export is not None and self.export.tasks is None:
            self.export.tasks = list(self.eval.tasks)
        return self

    @property
    def run_dir(self) -> Path:
        """The folder every stage of this recipe reads and writes."""
        return Path(self.output_dir or os.path.join("runs", self.name))


COMPARE_INPUTS = StageInputs(fields=("compare", "comparison"), reads=("train", "eval"))
"""The comparison students are trained and evaluated as the run's own student is."""

REPORT_INPUTS = StageInputs(
    fields=(), reads=("synth", "capture", "train", "eval", "export", "bench", "compare")
)
"""The report reads every other stage's outputs."""
