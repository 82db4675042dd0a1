"""What the report says, in reading order: the run's sections, built from the run folder's
data (`distil.report.collect`) as renderer-neutral parts (`distil.report.document`).

Quality and samples live in `distil.report.quality`, efficiency in `distil.report.speed`,
the --compare statistics in `distil.report.comparison`; training, export parity, the data
and the recipe here.
"""

from typing import Any

from distil.report import plots
from distil.report.comparison import comparison
from distil.report.document import Code, Figure, Section, Table, num, pct, shown_path
from distil.report.quality import graded_examples, quality, sample_answers, summary
from distil.report.speed import efficiency


def build_sections(data: dict[str, Any]) -> list[Section]:
    """All sections the run's data supports, in reading order."""
    builders = [
        summary,
        quality,
        sample_answers,
        graded_examples,
        efficiency,
        comparison,
        _training,
        _parity,
        _data,
        _recipe,
    ]
    return [s for build in builders if (s := build(data)) is not None]


def _training(data: dict[str, Any]) -> Section | None:
    if not data["train_log"]:
        return None
    curves = {"student": data["train_log"]}
    for name, variant in data["compare"].items():
        curves[name] = variant["train_log"]
    trained = data["train_summary"]
    text = []
    if trained:
        text.append(
            f"{trained.get('steps')} optimizer steps over {num(trained.get('tokens_seen'))} "
            f"tokens in {trained.get('elapsed_s', 0):.0f} s "
            f"({'fused-linear' if trained.get('fused') else 'dense'} loss path)."
        )
        absent = (trained.get("signal_positions") or {}).get("absent")
        if absent:
            text.append(
                f"{num(absent)} of {num(trained['signal_positions'].get('stored'))} "
                "positions of the signal store were absent (the teacher returned no "
                "logprobs there): the divergence skipped them."
            )
    if len([log for log in curves.values() if log]) > 1:
        text.append("Losses of different objectives are on different scales; compare each curve's shape.")
    else:
        text.append(
            f"One curve, one objective: the student's training loss{_objective(data)} per optimizer step."
        )
    return Section(
        "Training", text, [Figure("loss", plots.loss_curves(curves), "Training loss per optimizer step")]
    )


def _objective(data: dict[str, Any]) -> str:
    """' (forward_kl, kd weight 1.0, ce weight 0.0)' from the recipe's distill section."""
    distill = data["recipe"].get("distill") or {}
    parts = [
        str(distill[k]) if k == "divergence" else f"{k.replace('_', ' ')} {distill[k]}"
        for k in ("divergence", "kd_weight", "ce_weight")
        if k in distill
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _parity(data: dict[str, Any]) -> Section | None:
    parity = data["parity"]
    if not parity:
        return None
    variants = parity.get("variants", [])
    # task accuracy only where the run graded task families: none is no "0.0%"
    graded = "accuracy" in data["eval"].get("student", {}) and any(
        v.get("accuracy") is not None for v in variants
    )
    rows, skipped = [], {}
    for variant in variants:
        check = str(variant.get("runtime_check", ""))
        if check.startswith("skipped: "):
            skipped.setdefault(check.removeprefix("skipped: "), []).append(variant["name"])
        verdict = "pass" if variant.get("passed") else "**FAIL**"
        rows.append(
            [
                variant.get("name", "?"),
                num(variant.get("max_abs_logit_diff")),
                pct(variant.get("top1_agreement")),
            ]
            + ([pct(variant.get("accuracy"))] if graded else [])
            + [f"{verdict} (checked, not run)" if check.startswith("skipped") else verdict]
        )
    text = ["Exported files against the PyTorch student."]
    text += [
        f"Runtime check skipped for {', '.join(names)} ({reason}): checked without running "
        "them (a GGUF file is read back: names, shapes, metadata, tokenizer, dequantised "
        "weights against PyTorch's); see docs/export.md."
        for reason, names in skipped.items()
    ]
    text += [
        f"**{v['name']} failed parity** and was set aside in export/{v.get('path')}, not "
        f"deployable: {'; '.join(v.get('failures', []))}."
        for v in variants
        if not v.get("passed", True)
    ]
    header = (
        ["variant", "max |Δlogit|", "top-1 agreement"] + (["task accuracy"] if graded else []) + ["check"]
    )
    return Section("Export parity", text, [Table(header, rows)])


def _data(data: dict[str, Any]) -> Section | None:
    synth = data["synth"]
    if not synth:
        return None
    teacher, spent = synth.get("teacher", {}), synth.get("spent", {})
    responses = synth.get("responses", {})
    rejected = synth.get("rejected") or {}
    sources = (synth.get("prompts") or {}).get("sources") or {}
    rows = [
        [
            "teacher",
            f"{teacher.get('model', '?')} ({teacher.get('backend', '?')})"
            + (f" at {teacher['endpoint']}" if teacher.get("endpoint") else ""),
        ],
        ["prompts", ", ".join(f"{name} {count:,}" for name, count in sources.items()) or "–"],
        ["responses kept", f"{responses.get('kept', 0):,} of {responses.get('requested', 0):,}"],
        ["rejected", ", ".join(f"{reason} {count:,}" for reason, count in rejected.items()) or "none"],
        [
            "sampling",
            ", ".join(
                f"{k} {v}"
                for k, v in (synth.get("sampling") or {}).items()
                if v is not None and v is not False and v != []
            ),
        ],
        [
            "tokens",
            f"{spent.get('prompt_tokens', 0):,} prompt + "
            f"{spent.get('completion_tokens', 0):,} completion in "
            f"{spent.get('requests', 0):,} requests",
        ],
    ]
    rows += [
        [key, str(synth[key])]
        for key in ("seed", "license", "stopped", "created", "toolkit_version")
        if synth.get(key) is not None
    ]
    rows = [[what, shown_path(value, data["run_dir"])] for what, value in rows]
    return Section(
        "Data",
        [
            "Prompts and teacher responses synthesised for this run (the "
            "rows, with provenance, are in data/train.parquet; dropped ones "
            "in data/rejects.jsonl)."
        ],
        [Table(["what", "value"], rows)],
    )


def _recipe(data: dict[str, Any]) -> Section | None:
    if not data["recipe_text"]:
        return None
    return Section(
        "Recipe",
        ["The recipe this run used, every default spelled out (paths relative to the run folder)."],
        [Code(shown_path(data["recipe_text"], data["run_dir"]), "yaml")],
    )
