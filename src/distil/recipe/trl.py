"""TRL's and transformers' training-argument names, and the recipe field each one is in distil.

A recipe key that distil does not know but TRL (`SFTConfig`, `GKDConfig`, the experimental
`DistillationConfig`) or transformers (`TrainingArguments`) does is answered with the distil
field, wherever the key was written (distil.recipe.load):

    unknown key per_device_train_batch_size; did you mean train.batch_size? (TRL: per_device_train_batch_size)

A name without an equivalent says what distil does instead. `trl_table()` is this table as
docs/recipe.md shows it; docs/trl.md tells where distil behaves differently from TRL.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Equivalent:
    """What a TRL or transformers argument is in a distil recipe."""

    field: str | None
    """The recipe field (dotted), or None where distil has no field for it."""
    note: str = ""
    """How it differs, or, without a field, what distil does instead."""


TRL_NAMES: dict[str, Equivalent] = {
    # transformers.TrainingArguments, which SFTConfig, GKDConfig and DistillationConfig extend
    "per_device_train_batch_size": Equivalent("train.batch_size"),
    "per_device_eval_batch_size": Equivalent("eval.batch_size"),
    "gradient_accumulation_steps": Equivalent("train.grad_accum"),
    "num_train_epochs": Equivalent("train.epochs"),
    "max_steps": Equivalent("train.max_steps"),
    "learning_rate": Equivalent("train.learning_rate"),
    "lr_scheduler_type": Equivalent("train.lr_scheduler"),
    "warmup_ratio": Equivalent("train.warmup_ratio"),
    "warmup_steps": Equivalent(
        "train.warmup_ratio", "a share of the steps, not a count: warmup_steps / max_steps"
    ),
    "weight_decay": Equivalent("train.weight_decay"),
    "max_grad_norm": Equivalent("train.max_grad_norm"),
    "output_dir": Equivalent("output_dir", "at the top of the recipe, or `--out DIR`"),
    "logging_steps": Equivalent("train.log_every"),
    "save_steps": Equivalent("train.save_every"),
    "save_total_limit": Equivalent("train.keep_checkpoints"),
    "eval_steps": Equivalent("train.eval_every"),
    "seed": Equivalent("seed", "at the top of the recipe"),
    "bf16": Equivalent("train.mixed_precision", "bf16: true is train.mixed_precision: bf16"),
    "fp16": Equivalent("train.mixed_precision", "fp16: true is train.mixed_precision: fp16"),
    "gradient_checkpointing": Equivalent("student.gradient_checkpointing"),
    "report_to": Equivalent("train.report_to"),
    "torch_compile": Equivalent("train.compile", "on, off or auto"),
    "resume_from_checkpoint": Equivalent(
        None,
        "a command option, not a recipe key: `distil train RECIPE --resume PATH`; a rerun "
        "of the same command resumes from the newest checkpoint by itself",
    ),
    "push_to_hub": Equivalent(None, "after the run, `distil push RUN --repo ID` (docs/trl.md)"),
    "hub_model_id": Equivalent(None, "`distil push RUN --repo ID` (docs/trl.md)"),
    # TRL's SFTConfig
    "max_length": Equivalent("data.max_length"),
    "max_seq_length": Equivalent("data.max_length"),
    "packing": Equivalent("train.packing"),
    "dataset_text_field": Equivalent(
        None,
        "distil reads prompt/response pairs (data.prompt_field, data.response_field), chat "
        "rows (data.messages_field) or TRL's prompt/completion, not one text column",
    ),
    "completion_only_loss": Equivalent(None, "distil always learns the completion only"),
    "assistant_only_loss": Equivalent(None, "distil always learns the assistant turns only"),
    "chat_template_path": Equivalent("data.chat_template"),
    "pad_to_multiple_of": Equivalent("train.pad_multiple"),
    "use_liger_kernel": Equivalent("distill.fused", "distil's chunked fused-linear loss"),
    "model_init_kwargs": Equivalent(
        None,
        "the student's loading options are student.dtype, student.revision and student.trust_remote_code",
    ),
    "model_name_or_path": Equivalent("student.model"),
    "dataset_name": Equivalent("data.train", "a file, folder or hub dataset id"),
    # TRL's GKDConfig and DistillationConfig
    "lmbda": Equivalent("distill.on_policy.lmbda"),
    "beta": Equivalent(
        "distill.beta",
        "with distill.divergence: generalized_jsd (TRL's loss); distil's default divergence is forward_kl",
    ),
    "temperature": Equivalent(
        "distill.on_policy.temperature",
        "GKD's temperature samples the student's responses; distill.temperature softens the loss instead",
    ),
    "max_new_tokens": Equivalent(
        "distill.on_policy.max_new_tokens", "synth.sampling.max_new_tokens for the teacher's answers"
    ),
    "max_completion_length": Equivalent("distill.on_policy.max_new_tokens"),
    "teacher_model_name_or_path": Equivalent("teacher.model"),
    "teacher_model_revision": Equivalent("teacher.revision"),
    "teacher_model_init_kwargs": Equivalent(
        None,
        "the teacher's loading options are teacher.dtype, teacher.revision and teacher.trust_remote_code",
    ),
    "seq_kd": Equivalent(
        None,
        "distil trains sequence-level KD with distill.kd_weight=0, distill.ce_weight=1 on "
        "synthesised data (a synth: section writes the teacher's answers first)",
    ),
    "disable_dropout": Equivalent(
        None, "distil trains with the dropout the student's config sets (0 in most causal language models)"
    ),
    "num_generations": Equivalent(
        None,
        "one sample per prompt of an on-policy micro-batch; synth.samples_per_prompt for "
        "the teacher's answers",
    ),
    "use_vllm": Equivalent(
        "distill.on_policy.generator", "set to vllm; synth.generator: vllm for the teacher's answers"
    ),
    "vllm_gpu_memory_utilization": Equivalent("distill.on_policy.vllm_gpu_memory_utilization"),
    "vllm_mode": Equivalent(
        None,
        "colocate only: each training process holds its own engine; a separate server "
        "(`trl vllm-serve`) is not used for the student's samples",
    ),
}
"""Every TRL / transformers argument name distil answers with its own (docs/trl.md)."""


def trl_hint(name: str) -> str | None:
    """What the TRL or transformers argument `name` is in distil, as the end of an
    unknown-key message; None when `name` is not one of theirs."""
    equivalent = TRL_NAMES.get(name)
    if equivalent is None:
        return None
    if equivalent.field is None:
        return f"TRL's {name}: {equivalent.note}"
    note = f": {equivalent.note}" if equivalent.note else ""
    return f"did you mean {equivalent.field}? (TRL: {name}{note})"


def trl_table() -> list[str]:
    """The table as markdown lines, for the recipe reference (docs/recipe.md)."""
    rows = [
        f"| `{name}` | {f'`{e.field}`' if e.field else 'none'} | {e.note} |" for name, e in TRL_NAMES.items()
    ]
    return ["| TRL / transformers | distil | note |", "| --- | --- | --- |", *rows, ""]
