"""Where the teacher's signal comes from, decided once from the recipe.

    signal = teacher_signal(recipe)
    signal.source        # "live", "store", "api-store", "cross-live", "cross-store" or "none"
    signal.on_policy     # "off", "live" (the local teacher scores the samples) or "api"
    signal.live_teacher  # training runs teacher.model in process

Every place that needs the training mode asks this description instead of testing flag
combinations: the recipe's cross-section checks (distil.recipe.job), the pipeline (does it
capture first?), the capture stage (through the API or in process?) and the training
session, which picks its one training-signal object from it (distil.train.signals).
"""

from dataclasses import dataclass
from typing import Literal, Protocol

from distil.recipe.capture import CaptureSection
from distil.recipe.cross_tokenizer import CrossTokenizerSection
from distil.recipe.models import TeacherSection
from distil.recipe.train import DistillSection, SignalsSection

Source = Literal["none", "live", "store", "api-store", "cross-live", "cross-store"]
OnPolicy = Literal["off", "live", "api"]


@dataclass(frozen=True)
class TeacherSignal:
    """The teacher's part in a recipe's training, as one small value."""

    source: Source
    """Where the teacher's distributions over the training rows come from: `live` (teacher.model
    run at every step), `store` (a signal store, signals.path), `api-store` (this recipe's own
    store, captured through teacher.api: top-k logprobs at T = 1), `cross-live` / `cross-store`
    (a teacher of another tokenizer, live or from a store of its own tokens), `none`
    (distill.kd_weight = 0: no teacher distributions)."""
    on_policy: OnPolicy
    """Whether some micro-batches are the student's own samples (distill.on_policy.lmbda > 0),
    and who scores them: the local teacher (`live`) or the API teacher (`api`)."""
    hidden: bool
    """The hidden-state term (distill.hidden.weight > 0): the local teacher's states."""
    api: bool
    """The teacher is behind an API (teacher.api)."""
    cross: bool
    """Teacher and student tokenize differently (cross_tokenizer.method)."""
    own_capture: bool
    """Training reads this recipe's own capture (signals.path: capture): capture runs first."""
    capture_via_api: bool
    """`distil capture` asks the API teacher (by scoring, or the logprobs kept by synth), not
    teacher.model in process (teacher.api with capture.source other than local)."""

    @property
    def from_store(self) -> bool:
        """Training reads the teacher's distributions from a signal store."""
        return self.source in ("store", "api-store", "cross-store")

    @property
    def live_teacher(self) -> bool:
        """Training runs teacher.model in process: its logits, the scores of on-policy samples,
        or its hidden states."""
        return self.source in ("live", "cross-live") or self.on_policy == "live" or self.hidden

    @property
    def at_temperature_one(self) -> bool:
        """The distributions come from an API (top-k logprobs at T = 1, the rest one number),
        so they cannot be re-softened."""
        return (self.own_capture and self.capture_via_api) or self.on_policy == "api"


class _Sections(Protocol):
    """The recipe sections the signal is decided from (a `Recipe`)."""

    teacher: TeacherSection
    distill: DistillSection
    signals: SignalsSection
    cross_tokenizer: CrossTokenizerSection
    capture: CaptureSection


def teacher_signal(recipe: _Sections) -> TeacherSignal:
    """The recipe's teacher signal (see `TeacherSignal`)."""
    api = recipe.teacher.api is not None
    cross = recipe.cross_tokenizer.method != "off"
    store = recipe.signals.path is not None
    kd = recipe.distill.kd_weight > 0
    own_capture = kd and recipe.signals.path == "capture"
    capture_via_api = api and recipe.capture.source != "local"
    source: Source = "none"
    if kd and cross:
        source = "cross-store" if store else "cross-live"
    elif kd and store:
        source = "api-store" if own_capture and capture_via_api else "store"
    elif kd:
        source = "live"
    on_policy: OnPolicy = "off"
    if recipe.distill.on_policy.lmbda > 0:
        on_policy = "api" if api else "live"
    return TeacherSignal(
        source, on_policy, recipe.distill.hidden.weight > 0, api, cross, own_capture, capture_via_api
    )
