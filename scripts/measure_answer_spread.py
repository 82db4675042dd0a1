"""How a model spreads its probability over the valid answers of held-out `between` prompts
(docs/on-policy.md): each valid answer's probability by the chain rule over its tokens and
the end-of-turn marker, teacher-forced after the chat-formatted prompt.

    PYTHONPATH=src python scripts/measure_answer_spread.py runs/teacher-between \\
        runs/demo-between/student runs/demo-between/compare/seq_kd/seed-0/student

The first model is the reference (the teacher) the others are compared with. Prints one JSON
object: per model, means over prompts of
- valid_mass: probability of all valid answers together (the rest goes to wrong answers);
- top_share: the likeliest valid answer's share of valid_mass (1 / answers when spread evenly);
- effective_share: exp(entropy) of the valid answers' renormalised distribution, over how many
  valid answers there are (1: even, 1 / answers: one answer);
- tv_to_reference: total variation between that renormalised distribution and the reference's.
"""

import argparse
import json
import math

import torch

from distil.audit.modes import prompt_ids
from distil.models import load_model
from distil.tasks import generate_items
from distil.tasks.choice import between_answers, parse_between


def answer_logprobs(model, tokenizer, prompt: str, answers: list[str], end: str) -> list[float]:
    """log P(answer + end | prompt) for each answer, in one batched forward pass."""
    prefix = prompt_ids(tokenizer, prompt)
    tails = [tokenizer(answer + end, add_special_tokens=False).input_ids for answer in answers]
    width = len(prefix) + max(map(len, tails))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([prefix + tail + [pad] * (width - len(prefix) - len(tail)) for tail in tails])
    mask = torch.tensor(
        [[1] * (len(prefix) + len(tail)) + [0] * (width - len(prefix) - len(tail)) for tail in tails]
    )
    with torch.no_grad():
        logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    return [
        sum(logp[row, len(prefix) - 1 + i, token].item() for i, token in enumerate(tail))
        for row, tail in enumerate(tails)
    ]


def spread(logprobs: list[float], reference: list[float] | None = None) -> dict[str, float]:
    """The measures above for one prompt's valid answers (natural-log probabilities)."""
    probs = [math.exp(x) for x in logprobs]
    mass = sum(probs)
    share = [p / mass for p in probs]
    entropy = -sum(q * math.log(q) for q in share if q > 0)
    result = {"valid_mass": mass, "top_share": max(share), "effective_share": math.exp(entropy) / len(share)}
    if reference is not None:
        ref = [math.exp(x) for x in reference]
        ref = [p / sum(ref) for p in ref]
        result["tv_to_reference"] = 0.5 * sum(abs(a - b) for a, b in zip(share, ref, strict=True))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="the reference (teacher) first, then the others")
    parser.add_argument(
        "--prompts", type=int, default=1000, help="held-out between prompts, at most (all 218 by default)"
    )
    parser.add_argument("--end", default="<|end|>", help="the end-of-turn marker after an answer")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    items = generate_items("heldout", args.prompts, seed=0, tasks=["between"], at_most=True)
    answers = [between_answers(*parse_between(item.prompt)) for item in items]
    reference: list[list[float]] | None = None
    results = {}
    for name in args.models:
        loaded = load_model(name, "teacher", dtype="float32")
        scored = [
            answer_logprobs(loaded.model, loaded.tokenizer, item.prompt, valid, args.end)
            for item, valid in zip(items, answers, strict=True)
        ]
        rows = [spread(s, None if reference is None else reference[i]) for i, s in enumerate(scored)]
        results[name] = {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in rows[0]}
        reference = reference or scored
    print(
        json.dumps(
            {
                "prompts": len(items),
                "mean_valid_answers": round(sum(map(len, answers)) / len(answers), 2),
                "models": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
