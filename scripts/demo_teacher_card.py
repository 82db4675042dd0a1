"""The demo teacher's model card (README.md), written from the numbers of its build."""

from typing import Any

from transformers import LlamaConfig

from distil.tasks import TASKS, task_names

REBUILD = "PYTHONPATH=src python scripts/build_demo_teacher.py --out src/distil/assets/demo-teacher"


def _weights(weights: dict[str, float]) -> str:
    shown = ", ".join(f"{name} {weight:g}" for name, weight in weights.items())
    return f"{shown}, every other family 1"


def _rebuild(args: dict[str, Any]) -> str:
    """The command that made this build: REBUILD, or for a non-default build its own options."""
    if not args.get("init") and not args.get("extra_tasks"):
        return REBUILD
    options = [f"--init {args['init']}"] if args.get("init") else []
    if args.get("extra_tasks"):
        options += [
            f"--extra-tasks {' '.join(args['extra_tasks'])}",
            f"--extra-weight {args['extra_weight']:g}",
        ]
    return (
        f"PYTHONPATH=src python scripts/build_demo_teacher.py --out {args['out']} "
        f"{' '.join(options)} --steps {args['steps']} --seed {args['seed']}"
    )


def model_card(facts: dict[str, Any], config: LlamaConfig) -> str:
    """Markdown model card: architecture, tokenizer, training, held-out accuracy, rebuild."""
    args, training, held_out = facts["arguments"], facts["training"], facts["held_out"]
    accuracy = held_out["accuracy"]
    rows = [
        f"| {name} | {TASKS[name].description} | {accuracy[name]:.1%} |"
        for name in task_names(include_opt_in=True)
        if name in accuracy
    ]
    hardware = facts["hardware"]
    init = facts.get("init")
    origin = "trained from scratch" if init is None else f"fine-tuned from `{init['model']}`"
    return "\n".join(
        [
            "# demo teacher",
            "",
            "The teacher that `distil` ships for its default job (the model name `demo`). A small"
            if init is None and not args.get("extra_tasks")
            else "A variant of the teacher that `distil` ships for its default job (`demo`). A small",
            f"Llama-architecture causal LM {origin} on the toolkit's skills tasks",
            "(`distil.tasks`), so that a whole distillation run fits in minutes on a CPU.",
            "",
            "## Model",
            "",
            f"- Architecture: `LlamaForCausalLM`, {config.num_hidden_layers} layers, hidden size "
            f"{config.hidden_size}, MLP {config.intermediate_size}, {config.num_attention_heads} "
            f"attention heads ({config.num_key_value_heads} key/value heads), tied input and output "
            "embeddings",
            f"- Parameters: {facts['parameters']:,} (embeddings included, tied weights once)",
            "- Weights: fp16 safetensors (load them in float32 on a CPU)",
            f"- Tokenizer: byte-level BPE, {facts['vocab_size']} tokens, trained with `tokenizers` on "
            "task prompts and answers; capital letters and digits are always single tokens. "
            "Special tokens `<|pad|>` (padding), `<|end|>` (end of turn, the eos token), "
            "`<|system|>`, `<|user|>`, `<|assistant|>`",
            "- Chat template: `<|user|>{prompt}<|end|><|assistant|>` then the response, ended by `<|end|>`",
            "",
            "## Training",
            "",
            f"- Data: ground-truth answers to *training* prompts of the {len(rows)} task families, "
            f"drawn afresh every step, families weighted {_weights(facts['task_weights'])}; "
            "held-out prompts are never seen",
            "- Objective: cross-entropy on response tokens only (the prompt is masked)",
            *(
                []
                if init is None
                else [
                    f"- Initialised from `{init['model']}` (its weights and "
                    "tokenizer, unchanged); the steps below are the fine-tuning"
                ]
            ),
            f"- Steps: {training['steps']:,} of {args['batch_size']} sequences "
            f"({training['sequences']:,} sequences, {training['tokens']:,} tokens); AdamW, peak "
            f"learning rate {args['learning_rate']}, weight decay {args['weight_decay']}, linear "
            "warm-up then cosine decay to a tenth; gradient norm clipped at 1",
            f"- Final training loss: {training['final_loss']}",
            f"- Time: {training['train_seconds'] / 60:.1f} minutes on {hardware['torch_threads']} CPU "
            f"thread(s) of a {hardware['cpu_count']}-core {hardware['machine']} machine shared with "
            f"other work (torch {hardware['torch']})",
            f"- Seed: {args['seed']} (tokenizer, initialisation and data are all seeded)",
            "",
            "## Held-out accuracy",
            "",
            f"Greedy decoding, {held_out['prompts']} held-out prompts ({args['eval_per_task']} per "
            "family, seed 0), exact answers graded by each family's checker.",
            "",
            "| task | what it asks | accuracy |",
            "| --- | --- | --- |",
            *rows,
            f"| **overall** | | **{accuracy['overall']:.1%}** |",
            "",
            "## Rebuild",
            "",
            "```bash",
            _rebuild(args),
            "```",
            "",
            "The numbers above come from `build.json`, written by the same run. Intended use: a",
            "teacher for distillation demos and tests. It knows nothing beyond these tasks.",
            "",
        ]
    )
