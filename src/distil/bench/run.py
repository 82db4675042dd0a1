"""Efficiency of a run's teacher, student and exported variants, merged into eval.json.

    efficiency = bench_run("runs/demo")            # -> eval.json["efficiency"]

Each model is loaded in a fresh interpreter of its own (`distil.bench.worker`) with the same
prompts, thread count, warm-up and repeats, and the models take turns, one timed run each,
so that a change of load cannot skew their ratio; the ONNX variants run without PyTorch,
as they would when deployed. Which exported variants there are, and how each is opened,
come from export/parity.json and the export-format registry (`distil.export_formats`).
"""

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distil import __version__
from distil.bench.stats import latency_summary
from distil.bench.timing import BenchError, Worker, able_workers, interleaved_runs, speedups
from distil.export_formats import format_of_variant, missing_runtime, step_path
from distil.fsutil import atomic_write_json
from distil.machine import describe_machine, is_busy
from distil.recipe import BenchSection

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx.data", ".gguf")


def make_bench_config(**fields: Any) -> BenchSection:
    """A BenchSection from loose options (the CLI's); BenchError names a bad one."""
    try:
        return BenchSection(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise BenchError("bad bench option: " + "; ".join(problems)) from None


@dataclass(frozen=True)
class BenchTarget:
    """One model to time: a name for the table, its runtime, where it is, how to open it."""

    name: str
    runtime: str
    model: str
    """A folder, or (PyTorch) any model name `distil.models.load_model` takes."""
    opener: str = "distil.bench.worker:open_float32"
    """"module:function" opening it in the measuring interpreter: (model, threads) ->
    (runner, parameters, precision). An exported variant's is its format's `bench_open`."""


def weight_bytes(folder: str | Path) -> int | None:
    """Bytes of the weight files in a model folder (tokenizer and config left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def model_row(target: BenchTarget, figures: dict[str, Any], threads: int) -> dict[str, Any]:
    """One model's record: batch-1 figures at the top (what tables show), all under `batch`."""
    row = {
        "runtime": target.runtime,
        "model": target.model,
        "dtype": figures["dtype"],
        "params": figures["params"],
        "bytes": weight_bytes(target.model),
        "peak_memory_bytes": figures["peak_rss_bytes"],
        "load_seconds": figures["load_seconds"],
        "torch_imported": figures["torch_imported"],
        "threads": threads,
    }
    first = figures["batch"].get("1")
    if first is not None:
        row.update(
            ttft_ms=first["ttft_ms"],
            latency_ms_p50=first["token_latency_ms_p50"],
            latency_ms_p95=first["token_latency_ms_p95"],
            tokens_per_s=first["tokens_per_s"],
        )
    return {**row, "batch": figures["batch"]}


def bench_models(
    targets: list[BenchTarget], prompt_ids: list[list[int]], config: BenchSection
) -> dict[str, Any]:
    """Time every target, interleaved (progress bar): eval.json's `efficiency` and its setup.

    Each model is loaded once, in a process of its own; then, per batch size, the models
    take turns, one run each per round, in alternating order (T S V, V S T, ...), the first
    `warmup` rounds untimed. So a change of load falls on teacher and student alike, and each
    model's speed over the teacher's is taken pair by pair, round by round.
    """
    from distil.progress import progress_bar

    threads = config.threads or os.cpu_count() or 1
    machine_before = machine()  # the load average says how busy the machine was
    _warn_if_busy(machine_before)
    spec = {"prompt_ids": prompt_ids, "threads": threads, "new_tokens": config.new_tokens}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack, progress_bar() as bar:
        task = bar.add_task("bench", total=len(targets))
        workers = []
        for target in targets:
            bar.update(task, description=f"bench: loading {target.name}")
            worker = Worker(
                target,
                {**spec, "model": target.model, "runtime": target.runtime, "opener": target.opener},
                Path(tmp),
                config.timeout_s,
            )
            stack.callback(worker.close)
            workers.append(worker)
            bar.advance(task)
        rounds = config.warmup + config.repeats
        bar.update(
            task, total=len(targets) + rounds * sum(len(able_workers(workers, b)) for b in config.batch_sizes)
        )
        runs = interleaved_runs(
            workers, config, lambda w: bar.update(task, advance=1, description=f"bench: {w.target.name}")
        )
        last = {w.target.name: w.finish() for w in workers}
    models = {}
    for worker in workers:
        name = worker.target.name
        batch = {b: latency_summary(timed, int(b)) for b, timed in runs[name].items()}
        models[name] = model_row(worker.target, {**worker.header, **last[name], "batch": batch}, threads)
    for name, ratios in speedups(runs).items():
        models[name]["speedup_vs_teacher"] = ratios
    setup = {
        "config": config.model_dump(),
        "prompt_tokens": [len(p) for p in prompt_ids],
        "machine": {**machine_before, "load_average_1m_after": machine()["load_average_1m"]},
        "order": "interleaved",
        "distil_version": __version__,
    }
    return {"efficiency": models, "efficiency_setup": setup}


def _warn_if_busy(state: dict[str, Any]) -> None:
    from distil.progress import console

    load, cores = state["load_average_1m"], state["cpu_count"]
    if is_busy(load, cores):
        console.print(
            f"[yellow]the machine is busy (load average {load} on {cores} cores): "
            "timings will be noisy and slow",
            highlight=False,
            soft_wrap=True,
        )


def _warn_not_timed(not_timed: dict[str, str]) -> None:
    from distil.progress import console

    for name, reason in not_timed.items():
        console.print(f"[yellow]not timed[/]: {name} ({reason})", highlight=False, soft_wrap=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was (1-minute load average)."""
    return {
        **describe_machine(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def find_targets(run_dir: Path, teacher: str | None, variants: list[str] | None) -> list[BenchTarget]:
    """Teacher (when known), the run's student, then its exported variants: those named, or
    every deployable one whose format is timed by default and whose runtime is here."""
    targets = []
    if teacher:
        targets.append(BenchTarget("teacher", "pytorch", teacher))
    if (run_dir / "student" / "config.json").is_file():
        targets.append(BenchTarget("student", "pytorch", str(run_dir / "student")))
    export = run_dir / "export"
    records = exported_variants(export)
    for name in variants if variants is not None else default_variants(records)[0]:
        fmt = format_of_variant(name, records.get(name))
        if fmt is None or fmt.bench_open is None or not (export / name).is_dir():
            raise BenchError(
                f"{export / name} is not an exported variant; run `distil export "
                f"{run_dir}` first, or name one of the folders under {export}"
            )
        targets.append(BenchTarget(name, fmt.runtime, str(export / name), step_path(fmt.bench_open)))
    if not targets:
        raise BenchError(
            f"{run_dir} holds no student/ and no teacher was given; pass a run "
            "folder after `distil train`, or --teacher MODEL"
        )
    return targets


def exported_variants(export: Path) -> dict[str, dict[str, Any]]:
    """Each variant export/parity.json lists, by name (none without a parity.json)."""
    parity = export / "parity.json"
    if not parity.is_file():
        return {}
    return {v["name"]: v for v in json.loads(parity.read_text()).get("variants", [])}


def default_variants(records: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The deployable variants timed by default, and those that would be but whose runtime
    is not here (name -> why)."""
    timed, not_timed = [], {}
    for name, record in records.items():
        fmt = format_of_variant(name, record)
        if not record.get("passed") or fmt is None or fmt.bench_open is None or not fmt.bench_by_default:
            continue
        missing = missing_runtime(fmt)
        if missing:
            not_timed[name] = missing
        else:
            timed.append(name)
    return timed, not_timed


def recipe_teacher(run_dir: Path) -> str | None:
    """The teacher named in RUN/recipe.yaml, if the run has one."""
    import yaml

    recipe = run_dir / "recipe.yaml"
    if not recipe.is_file():
        return None
    return ((yaml.safe_load(recipe.read_text()) or {}).get("teacher") or {}).get("model")


def bench_prompts(targets: list[BenchTarget], config: BenchSection) -> list[list[int]]:
    """Token ids of the first held-out task prompts, with the first folder's tokenizer."""
    from distil.onnx_runtime import PromptEncoder
    from distil.tasks import generate_items

    folder = next((Path(t.model) for t in targets if (Path(t.model) / "tokenizer.json").is_file()), None)
    if folder is None:
        raise BenchError(
            "no model folder with a tokenizer.json to encode the prompts with; "
            "bench a run that has student/ or export/"
        )
    encoder = PromptEncoder(folder)
    items = generate_items("heldout", max(config.batch_sizes), config.seed)
    return [encoder.encode(item.prompt) for item in items[: max(config.batch_sizes)]]


def bench_run(
    run_dir: str | Path, config: BenchSection | None = None, teacher: str | None = None
) -> dict[str, Any]:
    """Time the run's teacher, student and exported variants; merge into RUN/eval.json.

    Returns (and merges) {"efficiency": {model: row}, "efficiency_setup": {...}}. `teacher`
    defaults to the one in RUN/recipe.yaml (a folder, `demo`, a built-in name).
    """
    run_dir, config = Path(run_dir), config or BenchSection()
    if not run_dir.is_dir():
        raise BenchError(f"run folder not found: {run_dir}; pass runs/NAME")
    teacher = teacher or recipe_teacher(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        teacher_path = _teacher_folder(teacher, Path(tmp), _recipe_seed(run_dir)) if teacher else None
        targets = find_targets(run_dir, teacher_path, config.variants)
        not_timed = (
            {} if config.variants is not None else default_variants(exported_variants(run_dir / "export"))[1]
        )
        _warn_not_timed(not_timed)
        measured = bench_models(targets, bench_prompts(targets, config), config)
    measured["efficiency_setup"]["not_timed"] = not_timed
    if teacher:
        measured["efficiency"]["teacher"].update(model=teacher)
    write_efficiency(run_dir / "eval.json", measured)
    show_efficiency(measured)
    return measured


def _teacher_folder(teacher: str, tmp: Path, seed: int) -> str:
    """A folder for the teacher: `demo` is resolved; built-in names and a model passed in
    memory (which the timing processes cannot reach) are saved to `tmp`."""
    from distil import inmemory
    from distil.models import BUILTIN_MODELS
    from distil.models.loading import DEMO_TEACHER_DIR

    if teacher == "demo" and not Path(teacher).exists():
        return str(DEMO_TEACHER_DIR)
    built_in = teacher in BUILTIN_MODELS and not Path(teacher).exists()
    if built_in or inmemory.is_memory_name(teacher):
        from distil.models import load_model

        loaded = load_model(teacher, "teacher", seed=seed)
        folder = tmp / teacher.replace(":", "-")
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)
        return str(folder)
    return teacher


def _recipe_seed(run_dir: Path) -> int:
    import yaml

    recipe = run_dir / "recipe.yaml"
    raw = yaml.safe_load(recipe.read_text()) if recipe.is_file() else None
    return int((raw or {}).get("seed", 0))


def write_efficiency(eval_path: Path, measured: dict[str, Any]) -> None:
    """Set eval.json's `efficiency` and `efficiency_setup` keys and, as
    `bench_tokens_per_s_batch1`, the batch-1 tokens/s of `teacher` and `student` (beside
    eval's own `eval_batched_greedy_tokens_per_s`), keeping every other key; atomic."""
    metrics: dict[str, Any] = {}
    if eval_path.is_file():
        try:
            metrics = json.loads(eval_path.read_text())
        except json.JSONDecodeError as err:
            raise BenchError(
                f"{eval_path} is not valid JSON ({err.msg}); rerun `distil eval` or delete it"
            ) from None
    metrics.update(measured)
    for role in ("teacher", "student"):  # batch-1 tokens/s beside each model's quality figures
        row = measured["efficiency"].get(role)
        if row is not None and "tokens_per_s" in row:
            metrics.setdefault(role, {})["bench_tokens_per_s_batch1"] = row["tokens_per_s"]
    atomic_write_json(eval_path, metrics)


def show_efficiency(measured: dict[str, Any]) -> None:
    """Print the efficiency table."""
    from rich.table import Table

    from distil.progress import print_table

    setup = measured["efficiency_setup"]
    batches = [str(b) for b in setup["config"]["batch_sizes"]]
    table = Table(
        title=f"efficiency: {setup['config']['new_tokens']} new tokens, "
        f"{next(iter(measured['efficiency'].values()))['threads']} threads, "
        f"load average {setup['machine']['load_average_1m']}"
    )
    for column in (
        "model",
        "runtime",
        "params",
        "MiB on disk",
        "peak RSS MiB",
        "TTFT ms",
        "step p50/p95 ms",
        *(f"tok/s b{b}" for b in batches),
        "× teacher (95%)",
    ):
        table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
    for name, m in measured["efficiency"].items():
        first = m["batch"][batches[0]]
        speedup = m.get("speedup_vs_teacher", {}).get(batches[0]) or {}
        table.add_row(
            name,
            m["runtime"],
            f"{m['params'] / 1e6:.2f}M" if m["params"] else "-",
            f"{m['bytes'] / 2**20:.1f}" if m["bytes"] is not None else "-",
            f"{m['peak_memory_bytes'] / 2**20:.0f}",
            f"{first['ttft_ms']:.1f}",
            f"{first['token_latency_ms_p50']:.2f}/{first['token_latency_ms_p95']:.2f}",
            *(f"{m['batch'][b]['tokens_per_s']:.0f}" if b in m["batch"] else "-" for b in batches),
            _speedup_cell(speedup),
        )
    print_table(table)


def _speedup_cell(found: dict[str, Any]) -> str:
    """'4.0× (3.8–4.2)': the paired ratio and its 95% interval, when there is one."""
    if not found:
        return "-"
    spread = f" ({found['low']:.1f}–{found['high']:.1f})" if found["low"] is not None else ""
    return f"{found['ratio']:.1f}×{spread}"
