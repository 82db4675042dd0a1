"""The measurements of docs/provenance.md: false positives over many random keys, the marked
teacher's accuracy, and open-model audits at several top-k. Run by hand (niced); each prints
one JSON object.

    python scripts/provenance_measure.py fpr-text --keys 10000     # held-out task texts, or FILES
    python scripts/provenance_measure.py fpr-model runs/demo/student --keys 10000 --top-k 1
    python scripts/provenance_measure.py accuracy --delta 2.0          # key: DISTIL_WATERMARK_KEY
    python scripts/provenance_measure.py accuracy runs/teacher-between --tasks all between
    python scripts/provenance_measure.py between-corpus DIR [RUN/data/train.parquet]
    python scripts/provenance_measure.py detect-model STUDENT --top-k 1 2 4 8
    python scripts/provenance_measure.py fpr-text --keys 10000 --scheme exp-min   # the other scheme

The false-positive runs need no key: every key is random, so every detection is a false one.
"""

import argparse
import json
import math
import time
from dataclasses import replace

import numpy as np

from distil.audit.modes import forcing_inputs, predicted_tuples
from distil.audit.run import task_documents
from distil.audit.sources import audit_tokenizer, encode, read_documents
from distil.provenance import WatermarkKey, WatermarkSpec, clopper_pearson, score_sequences, unique_tuples
from distil.provenance.score import pooled_tuples, score_tuples

ALPHA = 1e-3


def false_positives(
    contexts: np.ndarray, tokens: np.ndarray, keys: int, spec: WatermarkSpec, seed: int
) -> dict:
    """The rate of p <= ALPHA (and 0.01) over `keys` random keys, with exact 95% intervals."""
    rng = np.random.default_rng(seed)
    log10_p = np.array(
        [score_tuples(WatermarkKey.random(rng), spec, contexts, tokens).log10_p for _ in range(keys)]
    )
    out = {"keys": keys, "tuples": len(tokens)}
    for alpha in (ALPHA, 0.01, 0.05):
        hits = int((log10_p <= math.log10(alpha)).sum())
        low, high = clopper_pearson(hits, keys)
        out[f"alpha={alpha:g}"] = {"false_positives": hits, "rate": hits / keys, "interval95": [low, high]}
    return out


def model_tuples(model_dir: str, per_task: int, top_k: int, width: int, seed: int):
    from distil.models import load_model

    loaded = load_model(model_dir, "teacher", device="cpu")
    documents = task_documents(per_task, seed)
    sequences, starts = forcing_inputs(loaded.tokenizer, documents, 128)
    contexts, tokens = predicted_tuples(
        loaded.model, sequences, starts, width, top_k, 32, loaded.tokenizer.pad_token_id or 0
    )
    return (*unique_tuples(contexts, tokens), len(tokens))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "what", choices=["fpr-text", "fpr-model", "accuracy", "detect-model", "between-corpus"]
    )
    parser.add_argument("source", nargs="*")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--top-k", type=int, nargs="+", default=[1])
    parser.add_argument("--per-task", type=int, default=100)
    parser.add_argument("--delta", type=float, default=2.0)
    parser.add_argument("--field", default=None)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--scheme", choices=["kgw", "exp-min"], default="kgw")
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="accuracy: task families (default: every default family)"
    )
    args = parser.parse_args()
    if args.what == "between-corpus":
        print(json.dumps(between_corpus(args.source)))
        return
    if args.what == "accuracy" and args.scheme != "kgw":
        parser.error("accuracy measures the kgw bias; exp-min leaves the distribution as it is")
    spec = WatermarkSpec(gamma=0.25, delta=args.delta, context_width=2, scheme=args.scheme)
    started = time.time()
    if args.what == "fpr-text":
        from pathlib import Path

        documents = (
            read_documents([Path(s) for s in args.source], args.field)
            if args.source
            else [
                replace(d, text=f"{d.prompt}\n{d.text}")  # held-out tasks: unmarked
                for d in task_documents(args.per_task, 0)
            ]
        )
        sequences = encode(audit_tokenizer("demo"), documents)
        contexts, tokens, positions = pooled_tuples(sequences, spec.context_width)
        result = {"positions": positions, **false_positives(contexts, tokens, args.keys, spec, args.seed)}
    elif args.what == "fpr-model":
        contexts, tokens, positions = model_tuples(
            args.source[0], args.per_task, args.top_k[0], spec.context_width, 0
        )
        result = {
            "positions": positions,
            "top_k": args.top_k[0],
            **false_positives(contexts, tokens, args.keys, spec, args.seed),
        }
    elif args.what == "detect-model":
        key = WatermarkKey.from_env("DISTIL_WATERMARK_KEY")
        result = {}
        for k in args.top_k:
            contexts, tokens, positions = model_tuples(
                args.source[0], args.per_task, k, spec.context_width, 0
            )
            result[f"top{k}"] = {
                "positions": positions,
                **score_tuples(key, spec, contexts, tokens, positions).as_dict(),
            }
    else:
        result = teacher_accuracy(spec, args.per_task, *(args.source[:1] or ["demo"]), args.tasks)
    print(
        json.dumps(
            {"what": args.what, "source": args.source, **result, "seconds": round(time.time() - started, 1)},
            indent=1,
        )
    )


def between_corpus(paths: list[str]) -> dict:
    """Into the folder paths[0]: between-heldout.jsonl (every held-out `between` prompt with
    each of its valid answers, unmarked), between-prompts.jsonl (those prompts), and, given a
    synth train.parquet as paths[1], between-rows.jsonl (its `between` rows)."""
    from pathlib import Path

    import pyarrow.parquet as pq

    from distil.fsutil import atomic_write_text
    from distil.tasks import generate_items
    from distil.tasks.choice import between_answers, parse_between

    if not paths:
        raise SystemExit("between-corpus: name the folder to write into")
    out = Path(paths[0])
    out.mkdir(parents=True, exist_ok=True)
    items = generate_items("heldout", 1000, seed=0, tasks=["between"], at_most=True)

    def lines(rows: list[dict]) -> str:
        return "".join(json.dumps(row) + "\n" for row in rows)

    atomic_write_text(
        out / "between-heldout.jsonl",
        lines(
            [
                {"prompt": i.prompt, "response": a}
                for i in items
                for a in between_answers(*parse_between(i.prompt))
            ]
        ),
    )
    atomic_write_text(out / "between-prompts.jsonl", lines([{"prompt": i.prompt} for i in items]))
    written = {"prompts": len(items)}
    if len(paths) > 1:
        rows = [
            {"prompt": r["prompt"], "response": r["response"]}
            for r in pq.read_table(paths[1]).to_pylist()
            if r.get("source") == "task:between"
        ]
        atomic_write_text(out / "between-rows.jsonl", lines(rows))
        written["rows"] = len(rows)
    return written


def teacher_accuracy(
    spec: WatermarkSpec, per_task: int, model: str = "demo", tasks: list[str] | None = None
) -> dict:
    """Held-out accuracy of a teacher (the demo's by default) on `tasks`, unmarked and marked
    (greedy, 12 tokens)."""
    from distil.provenance import KGWBias
    from distil.tasks import accuracy, generate_items
    from distil.teachers import LocalTeacher, Sampling

    teacher = LocalTeacher.load(model, device="cpu", batch_size=64)
    items = generate_items("heldout", per_task=per_task, seed=0, tasks=tasks)
    sampling = Sampling(max_new_tokens=12, temperature=0.0)
    key = WatermarkKey.from_env("DISTIL_WATERMARK_KEY")
    plain = teacher.generate([i.prompt for i in items], sampling)
    teacher.logit_bias = KGWBias(key, spec, teacher.model.get_output_embeddings().weight.shape[0])
    marked = teacher.generate([i.prompt for i in items], sampling)
    same = sum(a.text == b.text for a, b in zip(plain, marked, strict=True))
    return {
        "prompts": len(items),
        "delta": spec.delta,
        "unmarked": accuracy(items, [c.text for c in plain]),
        "marked": accuracy(items, [c.text for c in marked]),
        "identical_answers": same / len(items),
        "text_test_marked": score_sequences(key, spec, [c.token_ids for c in marked]).as_dict(),
        "text_test_unmarked": score_sequences(key, spec, [c.token_ids for c in plain]).as_dict(),
    }


if __name__ == "__main__":
    main()
