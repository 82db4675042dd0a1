"""Efficiency of a run's teacher, student and exported variants, merged into eval.json.

    efficiency = bench_run("runs/demo")            # -> eval.json["efficiency"]

Each model is measured in a fresh interpreter (`distil.bench.worker`) with the same prompts,
thread count, warm-up and repeats; the ONNX variants run without PyTorch, as they would
when deployed. Which exported variants there are, and how each is opened, come from
export/parity.json and the export-format registry (`distil.export_formats`).
"""

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distil import __version__
from distil.errors import DistilError
from distil.export_formats import format_of_variant, missing_runtime, step_path
from distil.fsutil import atomic_write_json
from distil.machine import describe_machine, is_busy
from distil.recipe import BenchSection

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx.data", ".gguf")


class BenchError(DistilError):
    """A model cannot be benchmarked, or a run folder lacks what the benchmark needs."""


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
    return sum(p.stat().st_size for p in folder.iterdir()
               if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def bench_target(target: BenchTarget, prompt_ids: list[list[int]],
                 config: BenchSection) -> dict[str, Any]:
    """Time one model in a fresh interpreter; its figures as a dict."""
    threads = config.threads or os.cpu_count() or 1
    timing = config.model_dump(include={"new_tokens", "batch_sizes", "warmup", "repeats"})
    spec = {"model": target.model, "runtime": target.runtime, "opener": target.opener,
            "prompt_ids": prompt_ids, "threads": threads, **timing}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        try:
            done = subprocess.run([sys.executable, "-m", "distil.bench.worker", str(spec_path)],
                                  capture_output=True, text=True, env=env,
                                  timeout=config.timeout_s)
        except subprocess.TimeoutExpired:
            raise BenchError(f"timing {target.name} took over {config.timeout_s:.0f} s; lower "
                             "--new-tokens / --repeats or raise the timeout") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise BenchError(f"timing {target.name} ({target.model}) failed: "
                         f"{lines[-1] if lines else f'exit status {done.returncode}'}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return model_row(target, figures, threads)


def model_row(target: BenchTarget, figures: dict[str, Any], threads: int) -> dict[str, Any]:
    """One model's record: batch-1 figures at the top (what tables show), all under `batch`."""
    row = {"runtime": target.runtime, "model": target.model, "dtype": figures["dtype"],
           "params": figures["params"],
           "bytes": weight_bytes(target.model), "peak_memory_bytes": figures["peak_rss_bytes"],
           "load_seconds": figures["load_seconds"], "torch_imported": figures["torch_imported"],
           "threads": threads}
    first = figures["batch"].get("1")
    if first is not None:
        row.update(ttft_ms=first["ttft_ms"], latency_ms_p50=first["token_latency_ms_p50"],
                   latency_ms_p95=first["token_latency_ms_p95"], tokens_per_s=first["tokens_per_s"])
    return {**row, "batch": figures["batch"]}


def bench_models(targets: list[BenchTarget], prompt_ids: list[list[int]],
                 config: BenchSection) -> dict[str, Any]:
    """Time every target in turn (progress bar): eval.json's `efficiency` and its setup."""
    from distil.progress import progress_bar

    models = {}
    machine_before = machine()  # the load average says how busy the machine was
    _warn_if_busy(machine_before)
    with progress_bar() as bar:
        task = bar.add_task("bench", total=len(targets))
        for target in targets:
            bar.update(task, description=f"bench {target.name}")
            models[target.name] = bench_target(target, prompt_ids, config)
            bar.advance(task)
    for name, ratios in speedups(models).items():
        models[name]["speedup_vs_teacher"] = ratios
    setup = {"config": config.model_dump(), "prompt_tokens": [len(p) for p in prompt_ids],
             "machine": {**machine_before, "load_average_1m_after": machine()["load_average_1m"]},
             "distil_version": __version__}
    return {"efficiency": models, "efficiency_setup": setup}


def speedups(models: dict[str, Any], reference: str = "teacher") -> dict[str, dict[str, float]]:
    """tokens/s of each model over the reference's, per batch size."""
    if reference not in models:
        return {}
    base = models[reference]["batch"]
    return {name: {b: figures["batch"][b]["tokens_per_s"] / base[b]["tokens_per_s"]
                   for b in figures["batch"] if b in base}
            for name, figures in models.items() if name != reference}


def _warn_if_busy(state: dict[str, Any]) -> None:
    from distil.progress import console

    load, cores = state["load_average_1m"], state["cpu_count"]
    if is_busy(load, cores):
        console.print(f"[yellow]the machine is busy (load average {load} on {cores} cores): "
                      "timings will be noisy and slow", highlight=False, soft_wrap=True)


def _warn_not_timed(not_timed: dict[str, str]) -> None:
    from distil.progress import console

    for name, reason in not_timed.items():
        console.print(f"[yellow]not timed[/]: {name} ({reason})", highlight=False, soft_wrap=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was (1-minute load average)."""
    return {**describe_machine(),
            "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


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
            raise BenchError(f"{export / name} is not an exported variant; run `distil export "
                             f"{run_dir}` first, or name one of the folders under {export}")
        targets.append(BenchTarget(name, fmt.runtime, str(export / name), step_path(fmt.bench_open)))
    if not targets:
        raise BenchError(f"{run_dir} holds no student/ and no teacher was given; pass a run "
                         "folder after `distil train`, or --teacher MODEL")
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
        if not record.get("passed") or fmt is None or fmt.bench_open is None \
                or not fmt.bench_by_default:
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

    folder = next((Path(t.model) for t in targets if (Path(t.model) / "tokenizer.json").is_file()),
                  None)
    if folder is None:
        raise BenchError("no model folder with a tokenizer.json to encode the prompts with; "
                         "bench a run that has student/ or export/")
    encoder = PromptEncoder(folder)
    items = generate_items("heldout", max(config.batch_sizes), config.seed)
    return [encoder.encode(item.prompt) for item in items[: max(config.batch_sizes)]]


def bench_run(run_dir: str | Path, config: BenchSection | None = None,
              teacher: str | None = None) -> dict[str, Any]:
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
        not_timed = {} if config.variants is not None else \
            default_variants(exported_variants(run_dir / "export"))[1]
        _warn_not_timed(not_timed)
        measured = bench_models(targets, bench_prompts(targets, config), config)
    measured["efficiency_setup"]["not_timed"] = not_timed
    if teacher:
        measured["efficiency"]["teacher"].update(model=teacher)
    write_efficiency(run_dir / "eval.json", measured)
    show_efficiency(measured)
    return measured


def _teacher_folder(teacher: str, tmp: Path, seed: int) -> str:
    """A folder for the teacher: `demo` and built-in names are resolved or saved to `tmp`."""
    from distil.models import BUILTIN_MODELS
    from distil.models.loading import DEMO_TEACHER_DIR

    if teacher == "demo" and not Path(teacher).exists():
        return str(DEMO_TEACHER_DIR)
    if teacher in BUILTIN_MODELS and not Path(teacher).exists():
        from distil.models import load_model

        loaded = load_model(teacher, "teacher", seed=seed)
        loaded.model.save_pretrained(tmp / teacher)
        loaded.tokenizer.save_pretrained(tmp / teacher)
        return str(tmp / teacher)
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
            raise BenchError(f"{eval_path} is not valid JSON ({err.msg}); rerun `distil eval` or "
                             "delete it") from None
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
    table = Table(title=f"efficiency: {setup['config']['new_tokens']} new tokens, "
                        f"{next(iter(measured['efficiency'].values()))['threads']} threads, "
                        f"load average {setup['machine']['load_average_1m']}")
    for column in ("model", "runtime", "params", "MiB on disk", "peak RSS MiB", "TTFT ms",
                   "step p50/p95 ms", *(f"tok/s b{b}" for b in batches), "× teacher"):
        table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
    for name, m in measured["efficiency"].items():
        first = m["batch"][batches[0]]
        speedup = m.get("speedup_vs_teacher", {}).get(batches[0])
        table.add_row(
            name, m["runtime"], f"{m['params'] / 1e6:.2f}M" if m["params"] else "-",
            f"{m['bytes'] / 2**20:.1f}" if m["bytes"] is not None else "-",
            f"{m['peak_memory_bytes'] / 2**20:.0f}", f"{first['ttft_ms']:.1f}",
            f"{first['token_latency_ms_p50']:.2f}/{first['token_latency_ms_p95']:.2f}",
            *(f"{m['batch'][b]['tokens_per_s']:.0f}" if b in m["batch"] else "-" for b in batches),
            f"{speedup:.1f}×" if speedup else "-")
    print_table(table)
