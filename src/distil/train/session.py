"""The training session: everything a run holds in memory, prepared before any step.

    session = prepare_session(recipe)      # models, data, optimizer, schedule, the signal

The teacher's part is decided once, from the recipe (distil.recipe.signal.teacher_signal):
which teacher model runs in process (opened by distil.teachers' factory), which store or
API teacher is read, and the one training-signal object (distil.train.signals) the loop asks
for every micro-batch. Nothing is trained or written here. The order of what is loaded and
initialised is fixed (tiny models and adapters draw from the seeded global RNG), so a
recipe's run repeats exactly.
"""

from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import get_cosine_schedule_with_warmup

from distil.data import Example, Pair, batches_per_epoch, encode_pairs
from distil.errors import ModelError
from distil.loading import load_models, load_splits
from distil.losses import Objective
from distil.models import LoadedModel, linear_head_weight
from distil.progress import console
from distil.recipe import Recipe, TeacherSignal, teacher_signal
from distil.recipe.inputs import input_values, inputs_fingerprint
from distil.signals.recipe import training_signals
from distil.signals.training import StoredTeacher
from distil.train import engine
from distil.train.batch import BatchLayout
from distil.train.checkpoint import TrainerState
from distil.train.cross_tokenizer import CrossTokenizerTeacher, cross_tokenizer_teacher
from distil.train.hidden import HiddenMatcher, build_matcher, outputs_and_states
from distil.train.onpolicy import OnPolicy
from distil.train.onpolicy_api import ApiScoredSamples, ScoringOnPolicyTeacher
from distil.train.signals import LiveTeacher, StudentSide, TrainingSignal, off_policy_signal
from distil.train.step import compile_module, head_dtype, make_optimizer, use_compile
from distil.train.students import adapt_student

LIVE_TEACHER = "training with the teacher in process (distill.kd_weight > 0 without signals.path, "\
               "distill.hidden or distill.on_policy)"
"""What a live teacher is called in the refusal of one that gives no logits."""


class DistillationStudent(torch.nn.Module):
    """The student as one module whose forward gives what the loss needs.

    On the fused path that is the final hidden states (B, T, H); otherwise logits (B, T, V).
    Wrapping it lets accelerate prepare (and DDP-wrap) the whole forward. With a `hidden`
    matcher the forward also leaves the matched, projected states in `states`.
    """

    def __init__(self, model: torch.nn.Module, fused: bool,
                 hidden: HiddenMatcher | None = None) -> None:
        super().__init__()
        self.model, self.fused, self.hidden = model, fused, hidden
        self.states: list[torch.Tensor] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.hidden is None:
            return model_outputs(self.model, input_ids, attention_mask, self.fused)
        out, states = outputs_and_states(self.model, input_ids, attention_mask, self.fused)
        self.states = self.hidden.project(states)
        return out


def model_outputs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  hidden: bool) -> torch.Tensor:
    """Final hidden states (B, T, H) when `hidden`, else logits (B, T, V)."""
    if hidden:
        out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


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
    state: TrainerState
    signal: TrainingSignal
    """Where every micro-batch and its teacher side come from (distil.train.signals)."""
    fused: bool
    hidden: HiddenMatcher | None = None
    """The hidden-state term's layer map and projections (distill.hidden), if any."""

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
    train_pairs, _ = load_splits(recipe.data, recipe.seed)  # bad data fails before any model loads
    parts, examples = _open_parts(recipe, plan, accelerator, train_pairs)
    parts.fused = plan.source not in ("cross-live", "cross-store") and engine.fused_allowed(
        accelerator, _use_fused(recipe.distill.fused, parts.student, parts.teacher),
        recipe.distill.fused)
    parts.student.model.train()
    parts.hidden = build_matcher(recipe.distill.hidden, parts.student.model,
                                 parts.teacher and parts.teacher.model)
    trained = DistillationStudent(parts.student.model, parts.fused, parts.hidden)
    optimizer = make_optimizer([p for p in trained.parameters() if p.requires_grad],
                               recipe.train.learning_rate, recipe.train.weight_decay,
                               accelerator.device)
    total = total_steps(recipe, len(examples), accelerator.num_processes)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, round(recipe.train.warmup_ratio * total), total)
    if use_compile(recipe.train.compile, accelerator.device):
        compile_module(trained)
    module, optimizer = accelerator.prepare(trained, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = TrainerState(total_steps=total, fingerprint=recipe_fingerprint(recipe),
                         inputs=input_values(recipe, "train"))
    signal = choose_signal(recipe, plan, parts, accelerator, module, train_pairs)
    return TrainingSession(accelerator, recipe, parts.student, parts.teacher, module, optimizer,
                           scheduler, examples, state, signal, parts.fused, parts.hidden)


def _accelerator(recipe: Recipe) -> Accelerator:
    """The run's accelerator, the global RNG seeded, unsupported setups refused."""
    mixed = recipe.train.mixed_precision
    if mixed == "auto":
        mixed = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(mixed_precision=mixed, **engine.accelerator_kwargs(recipe))
    set_seed(recipe.seed)
    engine.check_supported(accelerator, recipe)
    return accelerator


def _open_parts(recipe: Recipe, plan: TeacherSignal, accelerator: Accelerator,
                train_pairs: list[Pair]) -> tuple[SessionParts, list[Example]]:
    """The models the signal needs (student first, then the teacher in process), the
    training examples, and the store or aligned teacher it reads."""
    teacher, student, vocab = load_models(recipe, accelerator.device,
                                          need_teacher=plan.live_teacher, purpose=LIVE_TEACHER,
                                          hidden_states=plan.hidden)
    student = adapt_student(student, recipe.student)
    teacher = engine.place_teacher(accelerator, teacher, recipe.teacher.placement)
    examples = encode_pairs(student.tokenizer, train_pairs, recipe.data.template,
                            recipe.data.max_length)
    parts = SessionParts(teacher, student, vocab)
    if plan.source in ("store", "api-store"):
        parts.stored = training_signals(recipe, student)
        parts.stored.check_covers(examples)
        parts.vocab = parts.stored.vocab_size
    parts.cross = cross_tokenizer_teacher(recipe, plan.source, teacher, student, train_pairs,
                                          examples)
    return parts, examples


def choose_signal(recipe: Recipe, plan: TeacherSignal, parts: SessionParts,
                  accelerator: Accelerator, module: Any,
                  train_pairs: list[Pair]) -> TrainingSignal:
    """The one training-signal object of the session (distil.train.signals)."""
    d = recipe.distill
    objective = Objective(d.divergence, d.temperature, d.beta, d.alpha, d.kd_weight, d.ce_weight)
    student = StudentSide(objective, parts.vocab, parts.fused, d.chunk_size,
                          use_compile(recipe.train.compile, accelerator.device),
                          head_dtype(accelerator.mixed_precision),
                          lambda: accelerator.unwrap_model(module))
    layout = BatchLayout(parts.student.tokenizer.pad_token_id, recipe.train.pad_multiple,
                         accelerator.device)
    live = None
    if plan.live_teacher:
        assert parts.teacher is not None
        live = LiveTeacher(student, layout, parts.teacher.model, parts.hidden)
    signal = off_policy_signal(plan.source, student, layout, live, parts.stored, parts.cross)
    if plan.on_policy == "off":
        return signal
    on_policy = dict(student=lambda: accelerator.unwrap_model(module).model,
                     tokenizer=parts.student.tokenizer, config=d.on_policy,
                     max_length=recipe.data.max_length, seed=recipe.seed)
    if plan.on_policy == "live":
        assert live is not None
        return OnPolicy(signal, live.grade_samples, **on_policy)
    scorer = ScoringOnPolicyTeacher.open(recipe, train_pairs, parts.student.tokenizer,
                                         parts.vocab, accelerator.process_index)
    scored = ApiScoredSamples(student, layout, scorer, recipe.data.max_length)
    return OnPolicy(signal, scored.grade_samples, close=scorer.close, **on_policy)


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
        teacher is None or linear_head_weight(teacher.model) is not None)
    if mode == "always" and not possible:
        raise ModelError("distill.fused=always, but an output head is not a plain linear layer "
                         "(bias, scaling or soft-capping); set distill.fused=auto")
    if mode == "auto" and not possible:
        console.print("[yellow]an output head is not a plain linear layer (bias, logit scaling "
                      "or soft-capping, e.g. Gemma 2): training uses the unfused loss, on the "
                      "logits the model itself computes")
    return possible and mode != "never"
