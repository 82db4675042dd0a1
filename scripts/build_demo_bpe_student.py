"""Build a demo student with its own tokenizer, for cross-tokenizer distillation.

    PYTHONPATH=src python scripts/build_demo_bpe_student.py --out runs/demo-bpe-student

The demo teacher's tokenizer keeps every digit and capital letter a token of its own; this
student's byte-level BPE (same size, 512 tokens, trained on the same task text, seeded)
has no such rule, so it merges digits (" 12", "30") and words differently. The student is
the teacher's first and last decoder layers, as the same-tokenizer demo student is (the
same parameter count), with new embeddings (tied to the output head): each new token's
row is the mean of the teacher's rows for the teacher tokens that spell it, so training
starts from a close copy instead of from scratch. Nothing is downloaded; it takes seconds.
"""

import argparse
import json
import random
from pathlib import Path

import torch
from build_demo_teacher import default_task_weights, sample_items, train_byte_level_bpe
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from distil.fsutil import atomic_directory
from distil.models import DEMO_TEACHER_DIR, count_parameters, keep_layers
from distil.progress import console


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the student to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument(
        "--layers", type=int, nargs="+", default=[0, 9], help="teacher layers the student keeps"
    )
    parser.add_argument(
        "--split-digits",
        action="store_true",
        help="every digit a token of its own, as Qwen2's and Llama's tokenizers "
        "do (the space before a number then is a token of its own too)",
    )
    return parser.parse_args()


def build_tokenizer(seed: int, vocab_size: int, split_digits: bool = False) -> PreTrainedTokenizerFast:
    """A plain byte-level BPE (GPT-2 pre-tokenization) trained on task prompts and answers;
    with `split_digits`, digits are cut apart before the byte-level step."""
    rng = random.Random(f"{seed}:student-tokenizer")
    corpus = [f"{item.prompt}\n{item.answer}" for item in sample_items(rng, 20_000, default_task_weights())]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if split_digits:
        byte_level = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    return train_byte_level_bpe(corpus, vocab_size, byte_level)


def teacher_pieces(token: str, teacher_vocab: dict[str, int]) -> list[int]:
    """Teacher ids spelling `token` (both byte-level, one alphabet): longest match first."""
    if token in teacher_vocab:
        return [teacher_vocab[token]]
    pieces, start = [], 0
    while start < len(token):
        stop = next(stop for stop in range(len(token), start, -1) if token[start:stop] in teacher_vocab)
        pieces.append(teacher_vocab[token[start:stop]])
        start = stop
    return pieces


def transplant_embeddings(
    model: torch.nn.Module, teacher_vocab: dict[str, int], tokenizer: PreTrainedTokenizerFast
) -> None:
    """New (tied) embeddings: each token's row the mean of its teacher pieces' rows."""
    old = model.get_input_embeddings().weight.detach().float()  # (V_t, H)
    rows = torch.stack(
        [
            old[teacher_pieces(token, teacher_vocab)].mean(dim=0)
            for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda x: x[1])
        ]
    )
    model.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(rows)
    model.tie_weights()
    config = model.config
    config.vocab_size = len(tokenizer)
    config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer(args.seed, args.vocab_size, args.split_digits)
    teacher_tokenizer = AutoTokenizer.from_pretrained(DEMO_TEACHER_DIR)
    model = AutoModelForCausalLM.from_pretrained(DEMO_TEACHER_DIR, dtype=torch.float32, use_safetensors=True)
    keep_layers(model, args.layers)
    transplant_embeddings(model, teacher_tokenizer.get_vocab(), tokenizer)
    shared = len(set(tokenizer.get_vocab()) & set(teacher_tokenizer.get_vocab()))
    facts = {
        "seed": args.seed,
        "vocab_size": len(tokenizer),
        "layers": args.layers,
        "split_digits": args.split_digits,
        "parameters": count_parameters(model),
        "tokens_shared_with_teacher": shared,
    }
    with atomic_directory(args.out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "build.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)
    console.print(f"{json.dumps(facts)}; saved to {args.out}")


if __name__ == "__main__":
    main()
