"""What a watermark costs a real teacher (docs/provenance.md, SmolLM2): graded accuracy on
held-out `instruct` prompts and held-out perplexity, marked against unmarked, under several
random keys; and the unmarked corpus the open-model audit teacher-forces.

    python scripts/watermark_cost.py cost --deltas 1 2 --keys 3 --per-task 40 \
        --corpus-out heldout.jsonl [--expmin-per-task 20]
    python scripts/watermark_cost.py cost --deltas 2 --keys 3 --per-task 10 --plain heldout.jsonl
    python scripts/watermark_cost.py corpus heldout.jsonl --per-task 40

`cost` prints one JSON line per measurement as it goes (a run cut short keeps what it
printed), then a summary line. Accuracy: greedy, chat template, `--max-new-tokens` tokens;
the difference marked - unmarked is paired by prompt, with a 95% interval over prompts.
Perplexity: the marked distribution log_softmax(logits + delta * green) against the raw one,
on the same held-out text: the unmarked teacher's greedy answers and (with exp-min) its
answers sampled at T = 1, each after its rendered prompt. exp-min leaves the distribution as
it is, so its greedy answers and perplexity are the unmarked ones by construction; it is
measured where it acts, on text sampled at T = 1 (plain sampling under seeds against the
keyed draw under keys).
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from distil.provenance import ExpMinSampler, KGWBias, WatermarkKey, WatermarkSpec
from distil.provenance.greenlist import green_mask
from distil.server.expmin import ExpMinTeacher
from distil.tasks import check, generate_items
from distil.teachers import Completion, LocalTeacher, Sampling

TEACHER = "smollm2-135m-instruct"


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def graded(items: list, texts: list[str]) -> np.ndarray:
    """(N,) 1.0 where the response passes its family's checker."""
    return np.array([check(i.task, i.prompt, t) for i, t in zip(items, texts, strict=True)], float)


def paired(marked: np.ndarray, plain: np.ndarray) -> dict:
    """Mean of marked - plain over prompts (marked: (K, N) over K keys), 95% interval in points."""
    diff = marked.mean(axis=0) - plain.mean(axis=0) if plain.ndim == 2 else marked.mean(axis=0) - plain
    half = 1.96 * diff.std(ddof=1) / math.sqrt(len(diff))
    return {
        "points": round(100 * diff.mean(), 2),
        "interval95": [round(100 * (diff.mean() - half), 2), round(100 * (diff.mean() + half), 2)],
    }


def answer_nll(
    teacher: LocalTeacher,
    prompts: list[str],
    answers: list[tuple[int, ...]],
    marks: list[tuple[WatermarkKey, WatermarkSpec]],
) -> tuple[float, list[float], int]:
    """Mean NLL per answer token under the raw distribution and under each mark; tokens scored."""
    vocab = teacher.model.get_output_embeddings().weight.shape[0]
    raw, marked, count = 0.0, [0.0] * len(marks), 0
    for prompt, answer in zip(prompts, answers, strict=True):
        if not answer:
            continue
        head = teacher.render(prompt)
        ids = torch.tensor([head + list(answer)])
        with torch.no_grad():
            logits = teacher.model(ids).logits[0, len(head) - 1 : -1].double()  # (A, V)
        target = torch.tensor(answer)
        raw -= torch.log_softmax(logits, -1)[torch.arange(len(answer)), target].sum().item()
        contexts = ids[0, :-1].unfold(0, 2, 1)[len(head) - 2 :].numpy()  # (A, 2) context of each
        for j, (key, spec) in enumerate(marks):
            bias = torch.from_numpy(green_mask(key, spec, contexts, vocab)).double() * spec.delta
            log_q = torch.log_softmax(logits + bias, -1)
            marked[j] -= log_q[torch.arange(len(answer)), target].sum().item()
        count += len(answer)
    return raw / count, [m / count for m in marked], count


def cost(args: argparse.Namespace) -> None:
    started = time.time()
    torch.manual_seed(0)
    teacher = LocalTeacher.load(TEACHER, device="cpu", batch_size=32)
    items = generate_items("heldout", args.per_task, seed=0, tasks=["instruct"])
    prompts = [i.prompt for i in items]
    greedy = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0)
    plain = read_answers(args.plain, prompts, teacher) if args.plain else teacher.generate(prompts, greedy)
    plain_ok = graded(items, [c.text for c in plain])
    emit(
        {
            "run": "unmarked",
            "prompts": len(items),
            "accuracy": plain_ok.mean(),
            "seconds": round(time.time() - started),
        }
    )
    if args.corpus_out:
        write_corpus(args.corpus_out, prompts, [c.text for c in plain])
    rng = np.random.default_rng(args.seed)
    keys = [WatermarkKey.random(rng) for _ in range(args.keys)]
    vocab = teacher.model.get_output_embeddings().weight.shape[0]
    summary = {"prompts": len(items), "unmarked": round(100 * plain_ok.mean(), 2)}
    for delta in args.deltas:
        spec = WatermarkSpec(gamma=0.25, delta=delta, context_width=2)
        scores, same = [], []
        for k, key in enumerate(keys):
            marked = LocalTeacher(teacher.loaded, batch_size=32)
            marked.logit_bias = KGWBias(key, spec, vocab)
            answers = marked.generate(prompts, greedy)
            scores.append(graded(items, [c.text for c in answers]))
            same.append(np.mean([a.text == b.text for a, b in zip(answers, plain, strict=True)]))
            emit(
                {
                    "run": f"delta {delta}",
                    "key": k,
                    "accuracy": scores[-1].mean(),
                    "identical": same[-1],
                    "seconds": round(time.time() - started),
                }
            )
        summary[f"delta {delta}"] = {
            "accuracy": round(100 * np.mean(scores), 2),
            "per_key": [round(100 * s.mean(), 2) for s in scores],
            "identical": round(float(np.mean(same)), 3),
            "minus_unmarked": paired(np.array(scores), plain_ok),
        }
    marks = [(key, WatermarkSpec(gamma=0.25, delta=d, context_width=2)) for d in args.deltas for key in keys]
    raw, marked_nll, tokens = answer_nll(teacher, prompts, [c.token_ids for c in plain], marks)
    summary["perplexity_greedy_text"] = perplexities(raw, marked_nll, tokens, args)
    emit({"run": "perplexity", **summary["perplexity_greedy_text"], "seconds": round(time.time() - started)})
    if args.expmin_per_task:
        summary["exp-min"] = expmin_cost(teacher, keys, marks, args)
    summary["seconds"] = round(time.time() - started)
    emit({"run": "summary", **summary})


def perplexities(raw: float, marked: list[float], tokens: int, args: argparse.Namespace) -> dict:
    """Perplexity unmarked and, per delta, the mean over keys and its ratio to unmarked."""
    out: dict = {"tokens": tokens, "unmarked": round(math.exp(raw), 3)}
    for d, delta in enumerate(args.deltas):
        per_key = [math.exp(m) for m in marked[d * args.keys : (d + 1) * args.keys]]
        out[f"delta {delta}"] = {
            "per_key": [round(p, 3) for p in per_key],
            "ratio": round(float(np.mean(per_key)) / math.exp(raw), 4),
        }
    return out


def expmin_cost(
    teacher: LocalTeacher, keys: list[WatermarkKey], marks: list, args: argparse.Namespace
) -> dict:
    """Sampled at T = 1: plain draws under seeds 0.. against keyed exp-min draws under the keys."""
    items = generate_items("heldout", args.expmin_per_task, seed=0, tasks=["instruct"])
    prompts = [i.prompt for i in items]
    spec = WatermarkSpec(context_width=2, scheme="exp-min")
    plain, keyed, first = [], [], None
    for k, key in enumerate(keys):
        sampled = teacher.generate(
            prompts, Sampling(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=k)
        )
        first = first or sampled
        plain.append(graded(items, [c.text for c in sampled]))
        drawn = ExpMinTeacher(teacher, ExpMinSampler(key, spec)).generate(
            prompts, Sampling(max_new_tokens=args.max_new_tokens, temperature=1.0)
        )
        keyed.append(graded(items, [c.text for c in drawn]))
        emit({"run": "T=1", "seed_or_key": k, "plain": plain[-1].mean(), "exp-min": keyed[-1].mean()})
    raw, marked_nll, tokens = answer_nll(teacher, prompts, [c.token_ids for c in first], marks)
    return {
        "prompts": len(items),
        "plain_T1": round(100 * np.mean(plain), 2),
        "exp-min_T1": round(100 * np.mean(keyed), 2),
        "minus_plain": paired(np.array(keyed), np.array(plain)),
        "perplexity_sampled_text": perplexities(raw, marked_nll, tokens, args),
    }


def read_answers(path: str, prompts: list[str], teacher: LocalTeacher) -> list[Completion]:
    """The unmarked answers a `corpus` file holds for `prompts` (re-tokenised), in their order."""
    rows = map(json.loads, Path(path).read_text().splitlines())
    answers = {row["prompt"]: row["response"] for row in rows}
    missing = [p for p in prompts if p not in answers]
    if missing:
        raise SystemExit(f"{path} has no answer for {len(missing)} prompts, e.g. {missing[0]!r}")
    return [
        Completion(
            text=answers[p],
            token_ids=tuple(teacher.tokenizer(answers[p], add_special_tokens=False).input_ids),
            finish_reason="stop",
        )
        for p in prompts
    ]


def write_corpus(path: str, prompts: list[str], answers: list[str]) -> None:
    from distil.fsutil import atomic_write_text

    atomic_write_text(
        path,
        "".join(
            json.dumps({"prompt": p, "response": a}) + "\n" for p, a in zip(prompts, answers, strict=True)
        ),
    )


def corpus(args: argparse.Namespace) -> None:
    teacher = LocalTeacher.load(TEACHER, device="cpu", batch_size=32)
    items = generate_items("heldout", args.per_task, seed=0, tasks=["instruct"])
    prompts = [i.prompt for i in items]
    answers = teacher.generate(prompts, Sampling(max_new_tokens=args.max_new_tokens))
    write_corpus(args.file, prompts, [c.text for c in answers])
    emit({"corpus": args.file, "rows": len(prompts)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("cost")
    measure.add_argument("--deltas", type=float, nargs="+", default=[1.0, 2.0])
    measure.add_argument("--keys", type=int, default=3)
    measure.add_argument("--corpus-out", default=None)
    measure.add_argument(
        "--plain", default=None, help="a corpus file of unmarked answers to reuse, not regenerate"
    )
    measure.add_argument("--expmin-per-task", type=int, default=0)
    measure.add_argument("--seed", type=int, default=2027)
    written = commands.add_parser("corpus")
    written.add_argument("file")
    for command in (measure, written):
        command.add_argument("--per-task", type=int, default=40)
        command.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    (cost if args.command == "cost" else corpus)(args)


if __name__ == "__main__":
    main()
