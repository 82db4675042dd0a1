"""Build the demo teacher: tokenizer, Llama model, training on the skills tasks, model card.

    PYTHONPATH=src python scripts/build_demo_teacher.py --out src/distil/assets/demo-teacher

Steps, all seeded: train a byte-level BPE tokenizer on task text; build a small
Llama-architecture causal LM with tied embeddings; train it on ground-truth answers to
*training* prompts of every `distil.tasks` family (chat-formatted, loss on response tokens
only); measure held-out accuracy per family with batched greedy generation; save the model
in fp16 safetensors with its tokenizer and a README.md model card. `--steps 200` makes a
quick trial model.

Two options leave the default build alone and make other teachers: `--extra-tasks between`
adds opt-in families (`distil.tasks.choice`) to the training mix and the held-out table,
each drawn `--extra-weight` times as often as a family of weight 1; `--init demo` (or a
model folder) fine-tunes that model for `--steps` with its own tokenizer instead of
training a tokenizer and a model from scratch (the size options are then ignored):

    PYTHONPATH=src python scripts/build_demo_teacher.py --out /tmp/teacher-between \\
        --init demo --extra-tasks between --steps 800 --threads 1
"""

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import torch
from demo_teacher_card import model_card
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from distil.batching import collate
from distil.data import Pair, encode_pairs
from distil.fsutil import atomic_directory
from distil.models import DEMO_TEACHER_DIR, count_parameters, load_model
from distil.models.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS
from distil.progress import console, progress_bar
from distil.tasks import TASKS, TaskItem, accuracy, check, generate_items, task_names

MAX_LENGTH = 64
"""Longest chat-formatted prompt+response in tokens (the longest task item is ~30)."""
TASK_WEIGHTS = {"arithmetic": 3.0, "reverse": 2.0, "count": 2.0, "convert": 1.5}
"""How often each family is drawn for training, relative to 1 for the others: the
algorithmic families take longer to learn than the facts."""
ISOLATED = r" ?[A-Z0-9]"
"""Capital letters and digits (with a leading space) are always tokens of their own, so
letter and digit manipulation never meets a merged token."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the model to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--intermediate", type=int, default=384)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument(
        "--eval-per-task",
        type=int,
        default=100,
        help="held-out prompts per task family for the accuracy table",
    )
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument(
        "--eval-every", type=int, default=500, help="print a quick held-out accuracy every this many steps"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads; 0 keeps torch's default (use 1 on a busy machine)",
    )
    parser.add_argument(
        "--extra-tasks",
        nargs="+",
        default=[],
        metavar="FAMILY",
        help="opt-in task families (e.g. between) to add to training and the held-out table",
    )
    parser.add_argument(
        "--extra-weight", type=float, default=1.0, help="how often each extra family is drawn, relative to 1"
    )
    parser.add_argument(
        "--init",
        default=None,
        metavar="DIR_OR_demo",
        help="fine-tune this model (a folder, or demo) with its own tokenizer "
        "instead of building both from scratch",
    )
    args = parser.parse_args()
    opt_in = [name for name in task_names(include_opt_in=True) if name not in task_names()]
    for name in args.extra_tasks:
        if name not in opt_in:
            parser.error(
                f"--extra-tasks {name}: not an opt-in task family (every default family "
                f"is always trained); choose from {', '.join(opt_in)}"
            )
    return args


def default_task_weights() -> dict[str, float]:
    """How often each default family is drawn: `TASK_WEIGHTS`, 1 for the families it does not
    name (what the shipped teacher and its tokenizer were trained on)."""
    return {name: TASK_WEIGHTS.get(name, 1.0) for name in task_names()}


def task_weights(args: argparse.Namespace) -> dict[str, float]:
    """How often each trained family is drawn: the default weights, then each extra family at
    `--extra-weight`."""
    return {**default_task_weights(), **dict.fromkeys(args.extra_tasks, args.extra_weight)}


def sample_items(rng: random.Random, count: int, weights: dict[str, float]) -> list[TaskItem]:
    """`count` training items, families drawn by `weights` (repeats allowed)."""
    names = list(weights)
    return [TASKS[name].make(rng, "train") for name in rng.choices(names, list(weights.values()), k=count)]


def build_tokenizer(seed: int, vocab_size: int, weights: dict[str, float]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on task prompts and answers, with chat markers."""
    rng = random.Random(f"{seed}:tokenizer")
    corpus = [f"{item.prompt}\n{item.answer}" for item in sample_items(rng, 20_000, weights)]
    return train_byte_level_bpe(
        corpus,
        vocab_size,
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(ISOLATED), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        ),
    )


def train_byte_level_bpe(
    corpus: list[str], vocab_size: int, pre_tokenizer: pre_tokenizers.PreTokenizer
) -> PreTrainedTokenizerFast:
    """A byte-level BPE with the demo's special tokens and chat template, trained on `corpus`."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_LENGTH * 2,
    )


def build_model(args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A seeded, randomly initialised Llama model sized by the arguments."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=MAX_LENGTH * 2,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def initial_model(
    args: argparse.Namespace, weights: dict[str, float]
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """The model to train and its tokenizer: `--init`'s, as saved, or new ones from the seed."""
    if args.init:
        loaded = load_model(args.init, "student")
        return loaded.model, loaded.tokenizer
    tokenizer = build_tokenizer(args.seed, args.vocab_size, weights)
    return build_model(args, tokenizer), tokenizer


def init_record(source: str) -> dict[str, Any]:
    """Where `--init` came from and, if it has one, what its own build.json says it was."""
    folder = DEMO_TEACHER_DIR if source == "demo" else Path(source)
    build = folder / "build.json"
    earlier = json.loads(build.read_text()) if build.is_file() else {}
    return {
        "model": source,
        "folder": str(folder.resolve()),
        "training": earlier.get("training"),
        "task_weights": earlier.get("task_weights"),
    }


def train(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    args: argparse.Namespace,
    weights: dict[str, float],
) -> dict[str, Any]:
    """Train on freshly drawn ground-truth items each step, families drawn by `weights`;
    return what the card reports."""
    rng = random.Random(f"{args.seed}:train")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.learning_rate, betas=(0.9, 0.95), weight_decay=args.weight_decay
    )
    warmup = max(1, args.steps // 30)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_scale(step, warmup, args.steps)
    )
    model.train()
    started, tokens, losses = time.perf_counter(), 0, []
    with progress_bar("loss") as bar:
        task = bar.add_task("train", total=args.steps, loss="-")
        for step in range(args.steps):
            batch = training_batch(tokenizer, sample_items(rng, args.batch_size, weights))
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum())
            losses.append(loss.item())
            if step % 20 == 0 or step == args.steps - 1:
                bar.update(task, completed=step + 1, loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
            if (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
                _report_progress(model, tokenizer, step + 1, list(weights))
    model.eval()
    return {
        "steps": args.steps,
        "sequences": args.steps * args.batch_size,
        "tokens": tokens,
        "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
        "train_seconds": round(time.perf_counter() - started, 1),
    }


def _report_progress(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, step: int, tasks: list[str]
) -> None:
    """A quick held-out accuracy (20 prompts per family) printed during training."""
    model.eval()
    items = generate_items("heldout", 20, seed=1, tasks=tasks)
    scores = accuracy(items, greedy_responses(model, tokenizer, [i.prompt for i in items]))
    console.print(f"step {step}: " + " ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    model.train()


def learning_rate_scale(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then a cosine decay to a tenth of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.45 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())


def training_batch(tokenizer: PreTrainedTokenizerFast, items: list[TaskItem]) -> dict[str, torch.Tensor]:
    """Chat-formatted items with labels on response tokens only (as the distil trainer does)."""
    pairs = [Pair(str(i), item.prompt, item.answer) for i, item in enumerate(items)]
    return collate(encode_pairs(tokenizer, pairs, "chat", MAX_LENGTH), tokenizer.pad_token_id)


@torch.no_grad()
def greedy_responses(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[str],
    batch_size: int = 64,
    max_new_tokens: int = 12,
) -> list[str]:
    """Batched greedy generation with left padding; the decoded responses, in order."""
    tokenizer.padding_side = "left"
    responses: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
                for p in prompts[start : start + batch_size]
            ]
            inputs = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = output[:, inputs["input_ids"].shape[1] :]
            responses += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = "right"
    return responses


def held_out_accuracy(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, args: argparse.Namespace, tasks: list[str]
) -> dict[str, Any]:
    """Accuracy per family of `tasks` on held-out prompts, with how long generation took."""
    items = generate_items("heldout", args.eval_per_task, seed=args.seed, tasks=tasks)
    started = time.perf_counter()
    responses = greedy_responses(
        model, tokenizer, [i.prompt for i in items], max_new_tokens=args.max_new_tokens
    )
    seconds = time.perf_counter() - started
    wrong = [
        {"task": i.task, "prompt": i.prompt, "expected": i.answer, "got": r}
        for i, r in zip(items, responses, strict=True)
        if not check(i.task, i.prompt, r)
    ]
    return {
        "accuracy": accuracy(items, responses),
        "prompts": len(items),
        "seconds": round(seconds, 1),
        "examples_wrong": wrong[:20],
    }


def save(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, out: Path, card: str, facts: dict[str, Any]
) -> None:
    """fp16 safetensors, tokenizer, model card and the numbers behind it, in one atomic move."""
    with atomic_directory(out) as tmp:
        model.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        (tmp / "build.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # a temporary folder starts private; the model is for everyone
    model.to(torch.float32)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    weights = task_weights(args)
    model, tokenizer = initial_model(args, weights)
    console.print(
        f"tokenizer: {len(tokenizer)} tokens; model: {count_parameters(model):,} "
        f"parameters, {model.config.num_hidden_layers} layers"
    )
    training = train(model, tokenizer, args, weights)
    results = held_out_accuracy(model, tokenizer, args, list(weights))
    console.print(json.dumps(results["accuracy"], indent=1))
    facts = {
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "task_weights": {**TASK_WEIGHTS, **dict.fromkeys(args.extra_tasks, args.extra_weight)},
        **({"init": init_record(args.init)} if args.init else {}),
        "training": training,
        "held_out": results,
        "hardware": {
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    save(model, tokenizer, args.out, model_card(facts, model.config), facts)
    console.print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
