"""Recipe sections of the train stage: `distill:` (the objective), `train:` (optimisation) and
`signals:` (training from a captured store instead of a live teacher).
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from distil.recipe.hidden import HiddenSection
from distil.recipe.onpolicy import OnPolicySection
from distil.recipe.section import TEACHER_IDENTITY, OneOf, PositiveFloat, Probability, Section, StageInputs


def divergence_names() -> list[str]:
    """The names of the divergence table (distil.losses.divergences), registered ones included.
    Imported when a recipe is checked, not with this module: the losses load torch, which
    `distil --help` does without."""
    from distil.losses import divergence_names as table_names

    return table_names()


def _parameter_problem(divergence: str, parameter: str, value: float) -> str | None:
    from distil.losses.divergences import parameter_problem

    return parameter_problem(divergence, parameter, value)


Divergence = Annotated[str, OneOf(divergence_names)]

DEFAULT_SCHEDULE = "cosine"
"""train.lr_scheduler's default: linear warm-up, then a cosine to 0."""
NEEDS_A_METRIC = ("reduce_lr_on_plateau", "greedy")
"""transformers schedules driven by a metric, not by the step: not offered."""


def scheduler_names() -> list[str]:
    """The step-driven learning-rate schedules of transformers (its SchedulerType)."""
    from transformers.trainer_utils import SchedulerType

    return [s.value for s in SchedulerType if s.value not in NEEDS_A_METRIC]


@dataclass(frozen=True)
class ScheduleName(OneOf):
    """One of `scheduler_names`; the default passes without importing transformers' trainer
    utilities (seconds of imports every recipe check would pay)."""

    def check(self, value: str) -> str:
        return value if value == DEFAULT_SCHEDULE else super().check(value)


class DistillSection(Section):
    """The objective: kd_weight * T^2 * divergence + ce_weight * cross-entropy, per response token."""

    divergence: Divergence = "forward_kl"
    """Divergence between the temperature-softened teacher and student distributions, from the
    table of distil.losses.divergences (`distil.losses.register_divergence` adds one)."""
    beta: float = 0.5
    """Interpolation of `generalized_jsd`: 0 is forward KL, 1 is reverse KL. Checked against the
    chosen divergence's range when it takes beta."""
    alpha: float = 0.1
    """Skew of `skew_forward_kl` / `skew_reverse_kl` (share of the divergence's own side in the
    mixture). Checked against the chosen divergence's range when it takes alpha."""
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
    hidden: HiddenSection = HiddenSection()
    """Hidden-state distillation between chosen layers, added to the objective."""
    on_policy: OnPolicySection = OnPolicySection()
    """On-policy distillation: some micro-batches train on the student's own samples."""

    @field_validator("beta", "alpha")
    @classmethod
    def _in_the_divergence_range(cls, value: float, info: ValidationInfo) -> float:
        divergence = info.data.get("divergence")  # absent when the name was refused
        if divergence and (problem := _parameter_problem(divergence, info.field_name, value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _some_signal(self) -> "DistillSection":
        if self.kd_weight == 0 and self.ce_weight == 0 and self.hidden.weight == 0:
            raise ValueError("kd_weight and ce_weight are both 0: set at least one above 0")
        if self.on_policy.lmbda > 0 and self.kd_weight == 0:
            raise ValueError(
                "on_policy.lmbda > 0 trains on the student's own samples, which "
                "only the teacher's distributions can grade: set kd_weight above 0"
            )
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
    """Peak AdamW learning rate, reached after warm-up and then following `lr_scheduler`."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    """AdamW decoupled weight decay."""
    warmup_ratio: Probability = 0.05
    """Share of steps spent warming the learning rate up linearly from 0 (by the schedules
    that warm up)."""
    lr_scheduler: Annotated[str, ScheduleName(scheduler_names)] = DEFAULT_SCHEDULE
    """Learning-rate schedule, transformers' `get_scheduler` by name (the names of its
    SchedulerType that follow the step): `cosine` warms up, then decays on a cosine to 0."""
    lr_scheduler_kwargs: dict[str, float | int | str | bool] = {}
    """Extra arguments of the schedule (transformers' `scheduler_specific_kwargs`), e.g.
    `{num_cycles: 2}` for cosine_with_restarts, `{lr_end: 1.0e-5, power: 2}` for
    polynomial, `{min_lr_rate: 0.1}` for cosine_with_min_lr."""
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
    eval_every: Annotated[int, Field(ge=1)] | None = None
    """Every this many steps (and at the last), the held-out loss on `eval_rows` rows of the
    data's eval split: `eval_ce` (cross-entropy on their responses) always, `eval_loss` (the
    training objective) and `eval_kl` (KL(teacher || student) at distill.temperature) where
    the teacher's signal of those rows is at hand (docs/training.md); into train_log.jsonl
    and the trackers. Evaluated without gradients in eval mode: the trained weights do not
    change. Empty: no held-out loss during training."""
    eval_rows: Annotated[int, Field(ge=1)] = 64
    """How many held-out rows (the first of the eval split, always the same) `eval_every`
    evaluates."""
    packing: bool = False
    """Lay each micro-batch's rows end to end into sequences of at most data.max_length
    tokens (position ids restarting with every row, no attention across rows) instead of
    padding every row to the longest: the same rows and loss, less padding. Needs a model
    whose attention honours position ids (Llama-family models in transformers do; others
    are refused at start)."""
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile the student's forward and the fused path's per-chunk loss. `auto` is on with
    CUDA (and Triton) and off on CPU, where compiling a small model costs more time than it
    saves. The same maths either way (docs/gpu.md)."""
    pad_multiple: Annotated[int, Field(ge=1)] | None = None
    """Right-pad each micro-batch's length to a multiple of this (e.g. 64), so that a compiled
    student sees a few shapes rather than one per length; padding is masked out of the loss.
    Empty pads to the longest row only."""
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = []
    """Experiment trackers that also receive each logged step, through accelerate (events
    under RUN/trackers/); each needs its package, e.g. `pip install tensorboard`."""


class SignalsSection(Section):
    """Training from a captured teacher-signal store instead of a live teacher."""

    path: str | None = None
    """Store to train from: a folder written by `distil capture`, or `capture` for this recipe's
    own capture.output. When set, training loads no teacher. Empty trains from the live teacher."""
    top_k: Annotated[int, Field(ge=1)] | None = None
    """Use only this many of the most likely stored entries per token (the others join the tail
    mass), e.g. to compare k = 8 and k = 32 from one k = 32 store. Empty uses all of them."""


INPUTS = StageInputs(
    fields=(
        "seed",
        *TEACHER_IDENTITY,
        "student",
        "data",
        "distill",
        "signals",
        "cross_tokenizer",
        "train.max_steps",
        "train.epochs",
        "train.batch_size",
        "train.grad_accum",
        "train.learning_rate",
        "train.weight_decay",
        "train.warmup_ratio",
        "train.lr_scheduler",
        "train.lr_scheduler_kwargs",
        "train.max_grad_norm",
        "train.mixed_precision",
    ),
    reads=("synth", "capture"),
    not_deciding=("distill.on_policy.vllm_gpu_memory_utilization",),
)
"""What decides the trained weights; how often to save, keep and log does not. Checkpoints
carry these values, and a run resumes only checkpoints written under the same ones."""
