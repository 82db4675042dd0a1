"""The audit's outputs: OUT/audit.json (everything) and OUT/audit.md (the verdict), atomically.

The key is never written: only the name of the variable it came from.
"""

import math
from pathlib import Path
from typing import Any

from distil.fsutil import atomic_write_json, atomic_write_text


def write_audit(out_dir: Path, result: dict[str, Any],
                alpha: float) -> tuple[Path, Path, dict[str, Any]]:
    """Write audit.json and audit.md into `out_dir`; return their paths and what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {**result, "alpha": alpha, "flagged": result["score"]["log10_p"] <= math.log10(alpha)}
    json_path, md_path = out_dir / "audit.json", out_dir / "audit.md"
    atomic_write_json(json_path, result)
    atomic_write_text(md_path, verdict_markdown(result))
    return json_path, md_path, result


def headline(result: dict[str, Any]) -> str:
    """One line: the verdict, the p-value and what it rests on."""
    score = result["score"]
    word = "WATERMARK DETECTED" if result["flagged"] else "no watermark detected"
    if _scheme(result) == "exp-min":
        evidence = (f"score {score['total_score']:.1f} over {score['kept']} distinct tuples kept "
                    f"from {score['tokens']} scored tokens, {score['kept']} expected")
    else:
        evidence = (f"{score['green']} green of {score['kept']} distinct tuples kept from "
                    f"{score['tokens']} scored tokens, {score['gamma']:.0%} expected")
    return f"{word} at alpha {result['alpha']:g}: p = {format_p(score['log10_p'])} ({evidence})"


def _scheme(result: dict[str, Any]) -> str:
    return result.get("settings", {}).get("scheme", "kgw")


def format_p(log10_p: float) -> str:
    """A p-value readable even when it underflows a float."""
    if log10_p > -4:
        return f"{10 ** log10_p:.4f}"
    exponent = math.floor(log10_p)
    return f"{10 ** (log10_p - exponent):.2f}e{exponent}"


_MEANING = {
    "kgw": "p is the chance of at least this many green tuples if the text or model never met "
           "the key (each distinct tuple green with probability gamma).",
    "exp-min": "p is the chance of at least this score if the text or model never met the key "
               "(each distinct tuple scores -log(1 - r), r uniform, so the sum is Gamma(kept, 1)).",
}


def verdict_markdown(result: dict[str, Any]) -> str:
    score, null, scheme = result["score"], result["null"], _scheme(result)
    lines = [f"# Watermark audit ({result['mode']})", "", f"**{headline(result)}**", "",
             "| | |", "| --- | --- |",
             f"| source | {result.get('source', '')} |",
             f"| key | from ${result.get('key_env', '?')} (never written) |",
             *_evidence_rows(score, scheme, result["settings"]["context_width"])]
    if "top_k" in result:
        lines.append(f"| predictions per position | top-{result['top_k']} |")
    if null:
        rates = ", ".join(f"{float(a):g}: {r:.3f}" for a, r in null["rate_at"].items())
        lines += [f"| empirical null | {null['keys']} random keys; share with p at or below the "
                  f"observed: {null['empirical_p']:.4f}; false-positive rate at {rates}; "
                  f"median p {null['median_p']:.3f} |"]
    lines += ["", f"{_MEANING[scheme]} The same test under random keys is the null it should "
              "agree with: its false-positive rate at a level should be at most that level.", ""]
    if result.get("documents"):
        lines += _document_rows(result["documents"], "green" if scheme == "kgw" else "total_score")
    return "\n".join(lines) + "\n"


def _evidence_rows(score: dict[str, Any], scheme: str, context_width: int) -> list[str]:
    kept = max(score["kept"], 1)
    if scheme == "exp-min":
        return [f"| watermark | exp-min (distortion-free), context {context_width} tokens |",
                f"| tokens scored | {score['tokens']} |",
                f"| distinct (context, token) tuples kept | {score['kept']} |",
                f"| score, sum of -log(1 - r) | {score['total_score']:.1f} (mean "
                f"{score['total_score'] / kept:.3f}; 1 expected) |",
                f"| exact gamma p-value | {format_p(score['log10_p'])} |"]
    return [f"| watermark | kgw, gamma {score['gamma']}, context {context_width} tokens |",
            f"| tokens scored | {score['tokens']} |",
            f"| distinct (context, token) tuples kept | {score['kept']} |",
            f"| green among them | {score['green']} ({score['green'] / kept:.1%}) |",
            f"| exact binomial p-value | {format_p(score['log10_p'])} |"]


def _document_rows(documents: list[dict[str, Any]], column: str) -> list[str]:
    name = "green" if column == "green" else "score"
    rows = ["## Documents", "", f"| document | tokens | kept | {name} | p |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| {d['name']} | {d['tokens']} | {d['kept']} | {d[column]:g} | {format_p(d['log10_p'])} |"
             for d in documents[:50]]
    if len(documents) > 50:
        rows.append(f"| ... {len(documents) - 50} more in audit.json | | | | |")
    return rows
