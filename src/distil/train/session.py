"""The training session: everything a run holds in memory, prepared before any step.

    session = prepare_session(recipe)      # models, data, optimizer, schedule, the signal

The teacher's part is decided once, from the recipe (distil.recipe.signal.teacher_signal):
which teacher model runs in process (opened by distil.teachers' factory), which store or
API teacher is read, and the one training-signal object (distil.train.signals) the loop asks
for every micro-batch. Nothing is trained or written here. The order of what is loaded and
initialised is fixed (tiny models and adapters draw from the seeded global RNG), so a
recipe's run repeats exactly.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from distil.batching import batches_per_epoch
from distil.data import Example, Pair, encode_pairs
from distil.errors import DataError, ModelError
from distil.loading import load_models, load_splits, open_stream
from distil.losses import Objective
from distil.models import LoadedModel, linear_head_weight
from distil.progress import console
from distil.recipe import Recipe, TeacherSignal, teacher_signal
from distil.recipe.inputs import input_values, inputs_fingerprint
from distil.signals.recipe import training_signals
from distil.signals.training import StoredTeacher
from distil.streaming import RowStream
from distil.train import engine
from distil.train.batch import BatchLayout
from distil.train.callbacks import Callbacks
from distil.train.checkpoint import TrainerState
from distil.train.cross_tokenizer import CrossTokenizerTeacher, cross_tokenizer_teacher
from distil.train.heldout import HeldOut, TeacherParts, held_out_evaluation
from distil.train.hidden import HiddenMatcher, build_matcher, outputs_and_states
from distil.train.onpolicy import OnPolicy
from distil.train.onpolicy_api import ApiScoredSamples, ScoringOnPolicyTeacher
from distil.train.packing import check_packing
from distil.train.rows import TrainingRows, training_rows
from distil.train.schedule import check_schedule, make_scheduler
from distil.train.signals import LiveTeacher, StudentSide, TrainingSignal, off_policy_signal
from distil.train.step import compile_module, head_dtype, make_optimizer, use_compile
from distil.train.students import adapt_student
from distil.train.vllm_sampler import on_policy_sampler

LIVE_TEACHER = (
    "training with the teacher in process (distill.kd_weight > 0 without signals.path, "
    "distill.hidden or distill.on_policy)"
)
"""What a live teacher is called in the refusal of one that gives no logits."""


class DistillationStudent(torch.nn.Module):
    """The student as one module whose forward gives what the loss needs.

    On the fused path that is the final hidden states (B, T, H); otherwise logits (B, T, V).
    Wrapping it lets accelerate prepare (and DDP-wrap) the whole forward. With a `hidden`
    matcher the forward also leaves the matched, projected states in `states`.
    """

    def __init__(self, model: torch.nn.Module, fused: bool, hidden: HiddenMatcher | None = None) -> None:
        super().__init__()
        self.model, self.fused, self.hidden = model, fused, hidden
        self.states: list[torch.Tensor] = []

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T) tokens with their attention mask, or packed with their position ids."""
        inputs = {"input_ids": input_ids}
        inputs.update({} if attention_mask is None else {"attention_mask": attention_mask})
        inputs.update({} if position_ids is None else {"position_ids": position_ids})
        if self.hidden is None:
            return model_outputs(self.model, inputs, self.fused)
        out, states = outputs_and_states(self.model, inputs, self.fused)
        self.states = self.hidden.project(states)
        return out


def model_outputs(model: Any, inputs: dict[str, torch.Tensor], hidden: bool) -> torch.Tensor:
    """Final hidden states (B, T, H) when `hidden`, else logits (B, T, V); `inputs` as
    distil.train.batch.Batch.model_inputs gives them."""
    if hidden:
        return model.base_model(**inputs, use_cache=False).last_hidden_state
    return model(**inputs, use_cache=False).logits


@dataclass
class TrainingSession:
    """Everything a training run holds in memory."""

    accelerator: Accelerator
    recipe: Recipe
    student: LoadedModel
    teacher: LoadedModel | None
    """The teacher model run in process, when the signal needs one (else None)."""
    module: Any  # the prepared DistillationStudent
    optimizer: Any
    scheduler: Any
    examples: list[Example]
    """The tokenised training rows in memory (none with data.streaming)."""
    rows: TrainingRows
    """Where each micro-batch's rows come from: `examples`, or a stream (data.streaming)."""
    state: TrainerState
    signal: TrainingSignal
    """Where every micro-batch and its teacher side come from (distil.train.signals)."""
    fused: bool
    hidden: HiddenMatcher | None = None
    """The hidden-state term's layer map and projections (distill.hidden), if any."""
    held_out: HeldOut | None = None
    """The held-out figures of train.eval_every (distil.train.heldout), if asked for."""
    callbacks: Callbacks = field(default_factory=Callbacks)
    """Told of each log line, held-out evaluation and checkpoint (distil.Distiller)."""
    signal_positions: dict[str, int] | None = None
    """A store's positions and how many are absent (train_summary.json), when one is read."""

    def unwrapped(self) -> Any:
        """The student model inside the prepared module."""
        return self.accelerator.unwrap_model(self.module).model

    def close(self) -> None:
        """Release what the signal holds open (a store, an API teacher and its journal)."""
        self.signal.close()


@dataclass
class SessionParts:
    """What the session opened for the recipe's signal, and how the student is trained."""

    teacher: LoadedModel | None
    student: LoadedModel
    vocab: int
    """Logit columns compared: shared by both models, the student's, or the store's."""
    stored: StoredTeacher | None = None
    cross: CrossTokenizerTeacher | None = None
    fused: bool = False
    hidden: HiddenMatcher | None = None


def prepare_session(recipe: Recipe) -> TrainingSession:
    """Load models and data, build optimizer and schedule; nothing is trained or written."""
    accelerator = _accelerator(recipe)
    plan = teacher_signal(recipe)
    stream = open_stream(recipe.data, recipe.seed)  # bad data fails before any model loads
    train_pairs, held_pairs = ([], []) if stream else load_splits(recipe.data, recipe.seed)
    held_pairs = held_out_rows(recipe, held_pairs, stream)
    check_schedule(recipe.train)
    parts, examples = _open_parts(recipe, plan, accelerator, train_pairs, held_pairs)
    rows = training_rows(
        recipe,
        examples,
        stream,
        parts.student.tokenizer,
        accelerator.process_index,
        accelerator.num_processes,
    )
    parts.fused = plan.source not in ("cross-live", "cross-store") and engine.fused_allowed(
        accelerator, _use_fused(recipe.distill.fused, parts.student, parts.teacher), recipe.distill.fused
    )
    parts.student.model.train()
    parts.hidden = build_matcher(
        recipe.distill.hidden, parts.student.model, parts.teacher and parts.teacher.model
    )
    trained = DistillationStudent(parts.student.model, parts.fused, parts.hidden)
    optimizer = make_optimizer(
        [p for p in trained.parameters() if p.requires_grad],
        recipe.train.learning_rate,
        recipe.train.weight_decay,
        accelerator.device,
    )
    total = total_steps(recipe, 0 if recipe.train.max_steps else rows.count(), accelerator.num_processes)
    scheduler = make_scheduler(optimizer, recipe.train, total)
    if use_compile(recipe.train.compile, accelerator.device):
        compile_module(trained)
    module, optimizer = accelerator.prepare(trained, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = TrainerState(
        total_steps=total, fingerprint=recipe_fingerprint(recipe), inputs=input_values(recipe, "train")
    )
    # the session's state, read when sampling: a resumed run replaces it by the checkpoint's
    signal = choose_signal(recipe, plan, parts, accelerator, module, train_pairs, lambda: session.state.step)
    session = TrainingSession(
        accelerator,
        recipe,
        parts.student,
        parts.teacher,
        module,
        optimizer,
        scheduler,
        examples,
        rows,
        state,
        signal,
        parts.fused,
        parts.hidden,
    )
    if held_pairs:
        session.held_out = _held_out(recipe, plan, parts, accelerator, module, held_pairs)
    if parts.stored is not None:
        session.signal_positions = parts.stored.positions()
    return session


def held_out_rows(recipe: Recipe, held_pairs: list[Pair], stream: RowStream | None = None) -> list[Pair]:
    """The first train.eval_rows held-out rows when train.eval_every asks for them (read
    from the stream when there is one), else none."""
    if recipe.train.eval_every is None:
        return []
    if stream is not None:
        held_pairs = stream.held_out(recipe.train.eval_rows)
    if not held_pairs:
        raise DataError(
            "train.eval_every needs held-out rows: set data.eval or "
            "data.eval_fraction > 0, or remove train.eval_every"
        )
    return held_pairs[: recipe.train.eval_rows]


def _accelerator(recipe: Recipe) -> Accelerator:
    """The run's accelerator, the global RNG seeded, unsupported setups refused."""
    mixed = recipe.train.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(mixed_precision=mixed, **engine.accelerator_kwargs(recipe))
    set_seed(recipe.seed)
    engine.check_supported(accelerator, recipe)
    return accelerator


def _open_parts(
    recipe: Recipe,
    plan: TeacherSignal,
    accelerator: Accelerator,
    train_pairs: list[Pair],
    held_pairs: list[Pair],
) -> tuple[SessionParts, list[Example]]:
    """The models the signal needs (student first, then the teacher in process), the
    training examples, and the store or aligned teacher it reads (the held-out rows too)."""
    teacher, student, vocab = load_models(
        recipe,
        accelerator.device,
        need_teacher=plan.live_teacher,
        purpose=LIVE_TEACHER,
        hidden_states=plan.hidden,
    )
    if recipe.train.packing:
        check_packing(student.model, "student")
        if teacher is not None and not plan.cross:  # a teacher of other tokens is not packed
            check_packing(teacher.model, "teacher")
    student = adapt_student(student, recipe.student)
    teacher = engine.place_teacher(accelerator, teacher, recipe.teacher.placement)
    examples = encode_pairs(student.tokenizer, train_pairs, recipe.data.template, recipe.data.max_length)
    parts = SessionParts(teacher, student, vocab)
    if plan.source in ("store", "api-store"):
        parts.stored = training_signals(recipe, student)
        parts.stored.check_covers(examples)
        note = parts.stored.absent_note(recipe.distill.ce_weight)
        if note is not None:
            console.print(note, highlight=False)
        parts.vocab = parts.stored.vocab_size
    held = encode_pairs(student.tokenizer, held_pairs, recipe.data.template, recipe.data.max_length)
    parts.cross = cross_tokenizer_teacher(
        recipe, plan.source, teacher, student, train_pairs, examples, held_pairs, held
    )
    return parts, examples


def student_side(recipe: Recipe, parts: SessionParts, accelerator: Accelerator, module: Any) -> StudentSide:
    """How every grader reads the prepared student, under the recipe's objective."""
    d = recipe.distill
    objective = Objective(d.divergence, d.temperature, d.beta, d.alpha, d.kd_weight, d.ce_weight)
    return StudentSide(
        objective,
        parts.vocab,
        parts.fused,
        d.chunk_size,
        use_compile(recipe.train.compile, accelerator.device),
        head_dtype(accelerator.mixed_precision),
        lambda: accelerator.unwrap_model(module),
    )


def batch_layout(recipe: Recipe, parts: SessionParts, accelerator: Accelerator) -> BatchLayout:
    """How rows become device batches: padded, or packed (train.packing)."""
    return BatchLayout(
        parts.student.tokenizer.pad_token_id,
        recipe.train.pad_multiple,
        accelerator.device,
        recipe.data.max_length if recipe.train.packing else None,
    )


def _live_teacher(
    plan: TeacherSignal, parts: SessionParts, student: StudentSide, layout: BatchLayout
) -> LiveTeacher | None:
    """The teacher run in process on each batch (with the hidden-state term), if any."""
    if not plan.live_teacher:
        return None
    assert parts.teacher is not None
    return LiveTeacher(student, layout, parts.teacher.model, parts.hidden)


def choose_signal(
    recipe: Recipe,
    plan: TeacherSignal,
    parts: SessionParts,
    accelerator: Accelerator,
    module: Any,
    train_pairs: list[Pair],
    steps: Callable[[], int],
) -> TrainingSignal:
    """The one training-signal object of the session (distil.train.signals); `steps`: the
    optimizer steps taken so far (when a vLLM sampler must take the new weights)."""
    student, layout = (
        student_side(recipe, parts, accelerator, module),
        batch_layout(recipe, parts, accelerator),
    )
    live = _live_teacher(plan, parts, student, layout)
    signal = off_policy_signal(plan.source, student, layout, live, parts.stored, parts.cross)
    if plan.on_policy == "off":
        return signal
    on_policy = dict(
        student=lambda: accelerator.unwrap_model(module).model,
        tokenizer=parts.student.tokenizer,
        config=recipe.distill.on_policy,
        max_length=recipe.data.max_length,
        seed=recipe.seed,
        sampler=on_policy_sampler(recipe, parts.student.tokenizer, accelerator.mixed_precision, steps),
    )
    if plan.on_policy == "live":
        assert live is not None
        return OnPolicy(signal, live.grade_samples, **on_policy)
    scorer = ScoringOnPolicyTeacher.open(
        recipe, train_pairs, parts.student.tokenizer, parts.vocab, accelerator.process_index
    )
    scored = ApiScoredSamples(student, layout, scorer, recipe.data.max_length)
    return OnPolicy(signal, scored.grade_samples, close=scorer.close, **on_policy)


def _held_out(
    recipe: Recipe,
    plan: TeacherSignal,
    parts: SessionParts,
    accelerator: Accelerator,
    module: Any,
    held_pairs: list[Pair],
) -> HeldOut:
    """The held-out figures of train.eval_every, graded as the training's signal grades."""
    student, layout = (
        student_side(recipe, parts, accelerator, module),
        batch_layout(recipe, parts, accelerator),
    )
    live = _live_teacher(plan, parts, student, layout)
    examples = encode_pairs(parts.student.tokenizer, held_pairs, recipe.data.template, recipe.data.max_length)
    same_tokens = None if plan.cross or live is None else live.model
    return held_out_evaluation(
        recipe, plan, student, layout, examples, TeacherParts(same_tokens, live, parts.stored, parts.cross)
    )


def total_steps(recipe: Recipe, num_examples: int, world_size: int = 1) -> int:
    """Optimizer steps: `train.max_steps`, or enough for `train.epochs` passes."""
    if recipe.train.max_steps:
        return recipe.train.max_steps
    per_epoch = batches_per_epoch(num_examples, recipe.train.batch_size, world_size)
    return max(1, round(recipe.train.epochs * per_epoch / recipe.train.grad_accum))


def recipe_fingerprint(recipe: Recipe) -> str:
    """Hash of the values of every recipe field the trained weights depend on."""
    return inputs_fingerprint(input_values(recipe, "train"))


def _use_fused(mode: str, student: LoadedModel, teacher: LoadedModel | None) -> bool:
    possible = linear_head_weight(student.model) is not None and (
        teacher is None or linear_head_weight(teacher.model) is not None
    )
    if mode == "always" and not possible:
        raise ModelError(
            "distill.fused=always, but an output head is not a plain linear layer "
            "(bias, scaling or soft-capping); set distill.fused=auto"
        )
    if mode == "auto" and not possible:
        console.print(
            "[yellow]an output head is not a plain linear layer (bias, logit scaling "
            "or soft-capping, e.g. Gemma 2): training uses the unfused loss, on the "
            "logits the model itself computes"
        )
    return possible and mode != "never"
