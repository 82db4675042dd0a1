"""What a report is made of, renderer-neutral: sections of text, tables, figures and code;
and how numbers, intervals and paths are written in them.

The Markdown and HTML renderers (`distil.report.render`) walk the same sections, so both
always say the same.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

ABSOLUTE_PATH = re.compile(r"(?<![\w/:.~])/[\w.+@-]+(?:/[\w.+@-]+)+/?")
"""A POSIX absolute path (not the path part of a URL, nor a fraction like 8/2)."""


class Verbatim(str):
    """Text shown exactly as written (a prompt, a model's answer): never read as Markdown or
    HTML; each renderer escapes all of it."""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str
    png: bytes
    alt: str


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    items: list[Table | Figure | Code] = field(default_factory=list)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def perplexity(value: float | None) -> str:
    """Three decimals below 10: a teacher's 1.004 must not read as 1."""
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else num(value)


def with_interval(
    mean: float | None, half: float | None, signed: bool = False, scale: float = 100.0, digits: int = 1
) -> str:
    """'87.7 ± 1.6' (a share in points by default; scale 1 for nats or perplexity)."""
    if mean is None:
        return "–"
    sign = "+" if signed else ""
    value = f"{scale * mean:{sign}.{digits}f}"
    return f"{value} ± {scale * half:.{digits}f}" if half is not None else value


CELL_CHARS = 300
"""The most of a model's text a table cell shows."""


def clip(text: str, limit: int = CELL_CHARS) -> Verbatim:
    """A model's text for a table cell: verbatim, cut at `limit` characters."""
    text = text.strip()
    return Verbatim(text if len(text) <= limit else text[:limit].rstrip() + " …")


def shown_path(text: str, run_dir: str | Path) -> str:
    """`text` with absolute paths made relative to the run folder, or cut to their file name
    when outside it: a report is shared, and the machine's folders are nobody's business."""
    base = Path(run_dir).resolve()

    def relative(match: re.Match[str]) -> str:
        path = Path(match.group(0))
        try:
            return str(path.resolve().relative_to(base)) or "."
        except ValueError:
            return path.name or str(path)

    return ABSOLUTE_PATH.sub(relative, text)
