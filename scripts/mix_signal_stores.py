"""Mix two runs' training data and signal stores: a share of a base run's training rows
replaced by another run's answers to the same prompts (docs/provenance.md's detection curve).

    python scripts/mix_signal_stores.py prompts BASE_RUN FILE --fraction 0.25 [--seed 0]
    python scripts/mix_signal_stores.py mix BASE_RUN OTHER_RUN OUT_RUN --fraction 0.1 \
        --other-signals OTHER_STORE [--seed 0]

The training rows of BASE_RUN are those its store (BASE_RUN/signals) holds. A seeded shuffle
of them picks the first round(fraction * rows), so a smaller fraction picks a subset of a
larger one. `prompts` writes those rows' prompts (a .jsonl with a `prompt` column) for the
other teacher to answer (`synth.prompts.file`). `mix` writes OUT_RUN/data/train.parquet: the
base rows in their order (so `data.eval_fraction` holds out the same positions), the picked
ones replaced by OTHER_RUN's row for the same prompt (`prompt_id`, `sample_index`) where it
has one (a picked prompt whose answer it rejected keeps the base row, and is counted); and
OUT_RUN/signals: each training row's signals from its own run's store, under OTHER_RUN's
fingerprint (the other store must hold every row of OTHER_RUN: capture it with
data.eval_fraction=0). Prints JSON: rows and response tokens from each run.
"""

import argparse
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distil.fsutil import atomic_write_bytes
from distil.signals.fingerprint import read_fingerprint
from distil.signals.reader import SignalStore
from distil.signals.writer import SignalWriter


def _key(row: dict) -> tuple[str, int]:
    return row["prompt_id"], int(row["sample_index"])


def picked_ids(base: Path, fraction: float, seed: int) -> set[str]:
    """Ids of the base run's training rows that the other run's rows replace."""
    with SignalStore(base / "signals") as store:
        ids = sorted(store.sample_ids())
    random.Random(seed).shuffle(ids)
    return set(ids[: round(fraction * len(ids))])


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_prompts(args: argparse.Namespace) -> None:
    picked = picked_ids(args.base_run, args.fraction, args.seed)
    rows = pq.read_table(args.base_run / "data" / "train.parquet").to_pylist()
    lines = [json.dumps({"prompt": r["prompt"]}) for r in rows if r["id"] in picked]
    atomic_write_bytes(args.file, "".join(line + "\n" for line in lines).encode())
    print(json.dumps({"fraction": args.fraction, "prompts": len(lines)}))


def mix(args: argparse.Namespace) -> None:
    if args.out_run.exists():
        raise SystemExit(f"{args.out_run} exists; give a new folder")
    picked = picked_ids(args.base_run, args.fraction, args.seed)
    base = pq.read_table(args.base_run / "data" / "train.parquet")
    other = {_key(r): r for r in pq.read_table(args.other_run / "data" / "train.parquet").to_pylist()}
    rows, unanswered = [], 0
    for row in base.to_pylist():
        if row["id"] in picked:
            if _key(row) in other:
                row = {**other[_key(row)], "_other": True}
            else:
                unanswered += 1  # the other run rejected its answer (see its rejects.jsonl)
        rows.append(row)
    (args.out_run / "data").mkdir(parents=True)
    table = pa.Table.from_pylist(
        [{k: v for k, v in r.items() if k != "_other"} for r in rows], schema=base.schema
    )
    atomic_write_bytes(args.out_run / "data" / "train.parquet", _parquet_bytes(table))
    fingerprint = read_fingerprint(args.other_signals)
    fingerprint["provenance"] = {
        **fingerprint.get("provenance", {}),
        "mixed": (
            f"{args.fraction} of the training rows of {args.base_run} replaced by {args.other_run}'s "
            f"(seed {args.seed})"
        ),
    }
    counts = {"other_rows": 0, "base_rows": 0, "other_tokens": 0, "base_tokens": 0}
    with (
        SignalStore(args.base_run / "signals") as base_store,
        SignalStore(args.other_signals) as other_store,
        SignalWriter(args.out_run / "signals", fingerprint, shard_tokens=262144) as writer,
    ):
        for row in rows:
            side = "other" if row.get("_other") else "base"
            store = other_store if side == "other" else base_store
            if side == "base" and row["id"] not in store:
                continue  # a held-out row: no signals, never trained on
            sample = store.get(row["id"])
            writer.add(sample)
            counts[f"{side}_rows"] += 1
            counts[f"{side}_tokens"] += sample.num_tokens
    print(
        json.dumps(
            {"fraction": args.fraction, "seed": args.seed, **counts, "picked_but_kept_base": unanswered}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prompts = commands.add_parser("prompts")
    prompts.add_argument("base_run", type=Path)
    prompts.add_argument("file", type=Path)
    mixing = commands.add_parser("mix")
    mixing.add_argument("base_run", type=Path)
    mixing.add_argument("other_run", type=Path)
    mixing.add_argument("out_run", type=Path)
    mixing.add_argument("--other-signals", type=Path, required=True)
    for command in (prompts, mixing):
        command.add_argument("--fraction", type=float, required=True)
        command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    (write_prompts if args.command == "prompts" else mix)(args)


if __name__ == "__main__":
    main()
