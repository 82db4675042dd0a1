"""The audit's outputs: OUT/audit.json (everything) and OUT/audit.md (the verdict), atomically.

The key is never written: only the name of the variable it came from.
"""

import math
from pathlib import Path
from typing import Any

from distil.fsutil import atomic_write_json, atomic_write_text


def write_audit(out_dir: Path, result: dict[str, Any], alpha: float) -> tuple[Path, Path, dict[str, Any]]:
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
        evidence = (
            f"score {score['total_score']:.1f} over {score['kept']} distinct tuples kept "
            f"from {score['tokens']} scored tokens, {score['kept']} expected"
        )
    else:
        evidence = (
            f"{score['green']} green of {score['kept']} distinct tuples kept from "
            f"{score['tokens']} scored tokens, {score['gamma']:.0%} expected"
        )
    return f"{word} at alpha {result['alpha']:g}: p = {format_p(score['log10_p'])} ({evidence})"


def _scheme(result: dict[str, Any]) -> str:
    return result.get("settings", {}).get("scheme", "kgw")


def format_p(log10_p: float) -> str:
    """A p-value readable even when it underflows a float."""
    if log10_p > -4:
        return f"{10**log10_p:.4f}"
    exponent = math.floor(log10_p)
    return f"{10 ** (log10_p - exponent):.2f}e{exponent}"


_MEANING = {
    "kgw": "p is the chance of at least this many green tuples if the text or model never met "
    "the key (each distinct tuple green with probability gamma).",
    "exp-min": "p is the chance of at least this score if the text or model never met the key "
    "(each distinct tuple scores -log(1 - r), r uniform, so the sum is Gamma(kept, 1)).",
}

_TESTED = {
    "text": "Whether these texts carry the watermark of the key: the mark a `distil serve "
    "--watermark` teacher puts into everything it writes.",
    "model": "Whether this model learnt from a marked teacher. It read text that carries no "
    "watermark, and at each position the next words it finds likeliest were checked "
    "against the key. A model leans towards the key's marked choices only if it was "
    "trained on what the marked teacher wrote or scored (Sander et al., 2024).",
    "api": "Whether what the model behind this API writes carries the watermark of the key: "
    "it was sent prompts, and its answers were checked. A model answers with the mark "
    "if it is the marked teacher or was trained on what that teacher wrote or scored.",
}


_SUBJECT = {"text": "text", "model": "model", "api": "model behind the API"}


def verdict_markdown(result: dict[str, Any]) -> str:
    """audit.md: the verdict and what it means in words, then the figures it rests on."""
    score, null, scheme = result["score"], result["null"], _scheme(result)
    lines = [
        f"# Watermark audit ({result['mode']})",
        "",
        f"**{headline(result)}**",
        "",
        "## What was tested",
        "",
        _TESTED.get(result["mode"], _TESTED["text"]),
        "",
        _evidence_words(score, scheme),
        "",
        "## The verdict",
        "",
        *_verdict_words(result),
        "",
        "## What it shows and what it does not",
        "",
        *_limits(result),
        "",
        "## The figures",
        "",
        "| | |",
        "| --- | --- |",
        f"| source | {result.get('source', '')} |",
        f"| key | from ${result.get('key_env', '?')} (never written) |",
        *_evidence_rows(score, scheme, result["settings"]["context_width"]),
    ]
    if "top_k" in result:
        lines.append(f"| predictions per position | top-{result['top_k']} |")
    if "sampling" in result:
        lines.append(
            f"| sampling | temperature {result['sampling']['temperature']:g}, at most "
            f"{result['sampling']['max_tokens']} tokens per answer |"
        )
    if null:
        rates = ", ".join(f"{float(a):g}: {r:.3f}" for a, r in null["rate_at"].items())
        lines += [
            f"| empirical null | {null['keys']} random keys; share with p at or below the "
            f"observed: {null['empirical_p']:.4f}; false-positive rate at {rates}; "
            f"median p {null['median_p']:.3f} |"
        ]
    lines += [
        "",
        f"{_MEANING[scheme]} The same test under random keys is the null it should "
        "agree with: its false-positive rate at a level should be at most that level.",
        "",
    ]
    if result.get("documents"):
        lines += _document_rows(result["documents"], "green" if scheme == "kgw" else "total_score")
    return "\n".join(lines) + "\n"


def one_in(log10_p: float) -> str:
    """A probability as odds a reader can picture: `1 in 1,300`, `1 in 10^42`."""
    if log10_p >= -0.3:
        return "better than even"
    if log10_p > -9:
        return f"about 1 in {float(f'{10**-log10_p:.2g}'):,.0f}"
    return f"about 1 in 10^{math.floor(-log10_p)}"


def _evidence_words(score: dict[str, Any], scheme: str) -> str:
    pieces = (
        f"{score['tokens']:,} scored tokens gave {score['kept']:,} distinct pieces of "
        "evidence (a few preceding tokens and the token that followed them; a repeat counts "
        "once)."
    )
    if scheme == "exp-min":
        return (
            f"{pieces} Each gets a score from the key; without the key's influence the "
            f"scores average 1. Here they average {score['total_score'] / max(score['kept'], 1):.2f}."
        )
    return (
        f"{pieces} The key marks {score['gamma']:.0%} of the possible tokens after each "
        f"context as green, at random; without the key's influence about {score['gamma']:.0%} "
        f"of the pieces are green. Here {score['green']:,} are "
        f"({score['green'] / max(score['kept'], 1):.1%})."
    )


def _verdict_words(result: dict[str, Any]) -> list[str]:
    log10_p, alpha = result["score"]["log10_p"], result["alpha"]
    subject = _SUBJECT.get(result["mode"], "text")
    chance = (
        f"If the {subject} had never met this key, evidence at least this strong would "
        f"turn up by chance with probability p = {format_p(log10_p)} ({one_in(log10_p)}). "
        f"The audit flags p at or below {alpha:g} ({one_in(math.log10(alpha))})."
    )
    words = [f"**{'Watermark detected' if result['flagged'] else 'No watermark detected'}.** {chance}"]
    null = result["null"]
    if null:
        rates = " and ".join(f"{rate:.1%} at {float(level):g}" for level, rate in null["rate_at"].items())
        stronger = round(null["empirical_p"] * (null["keys"] + 1)) - 1
        words += [
            "",
            f"Check: the same test under {null['keys']:,} random keys, which the "
            f"{subject} cannot have met, flagged {rates}; {stronger or 'none'} of them gave "
            "evidence at least as strong as the real key's.",
        ]
    return words


def _limits(result: dict[str, Any]) -> list[str]:
    mode, alpha = _SUBJECT.get(result["mode"], "text"), result["alpha"]
    if result["flagged"]:
        lines = [
            f"- It shows, beyond reasonable chance, that this {mode} was shaped by output "
            "marked with this key: the marked teacher's own, or a model's trained on it.",
            "- It does not show how much of the training came from the teacher, when, by "
            "whom, or whether the teacher's terms were broken. It is evidence only while "
            "the key stayed secret: anyone holding the key can write marked text.",
            f"- A chance remains: across many audits, {one_in(math.log10(alpha))} of the innocent "
            "ones are flagged at this level.",
        ]
    else:
        lines = [
            f"- It does not show that this {mode} never learnt from the teacher. A small "
            "share of marked training data, short training, too little evidence (few "
            "distinct pieces), or a mark the training could not copy all leave the test "
            "below its threshold.",
            "- It shows only that this test, on this evidence, found nothing beyond what chance gives.",
        ]
    if result["mode"] == "model":
        lines.append(
            "- The text the model read must carry no watermark under this key, or "
            "the text would be detected rather than the model."
        )
    if result["mode"] == "api":
        lines.append(
            "- It covers what the API answered to these prompts at these settings; an "
            "exp-min mark is absent from greedy (temperature 0) answers by design."
        )
    return lines


def _evidence_rows(score: dict[str, Any], scheme: str, context_width: int) -> list[str]:
    kept = max(score["kept"], 1)
    if scheme == "exp-min":
        return [
            f"| watermark | exp-min (distortion-free), context {context_width} tokens |",
            f"| tokens scored | {score['tokens']} |",
            f"| distinct (context, token) tuples kept | {score['kept']} |",
            f"| score, sum of -log(1 - r) | {score['total_score']:.1f} (mean "
            f"{score['total_score'] / kept:.3f}; 1 expected) |",
            f"| exact gamma p-value | {format_p(score['log10_p'])} |",
        ]
    return [
        f"| watermark | kgw, gamma {score['gamma']}, context {context_width} tokens |",
        f"| tokens scored | {score['tokens']} |",
        f"| distinct (context, token) tuples kept | {score['kept']} |",
        f"| green among them | {score['green']} ({score['green'] / kept:.1%}) |",
        f"| exact binomial p-value | {format_p(score['log10_p'])} |",
    ]


def _document_rows(documents: list[dict[str, Any]], column: str) -> list[str]:
    name = "green" if column == "green" else "score"
    rows = [
        "## Documents",
        "",
        f"| document | tokens | kept | {name} | p |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows += [
        f"| {d['name']} | {d['tokens']} | {d['kept']} | {d[column]:g} | {format_p(d['log10_p'])} |"
        for d in documents[:50]
    ]
    if len(documents) > 50:
        rows.append(f"| ... {len(documents) - 50} more in audit.json | | | | |")
    return rows
