"""Render report sections as Markdown (figures as files) and as one self-contained HTML page."""

import base64
import html
import re
from pathlib import Path

from distil.report.document import Code, Figure, Section, Table, Verbatim
from distil.report.plots import PAGE_WIDTH_PX

STYLE = """
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: PAGE_WIDTHpx; margin: 2rem auto; padding: 0 1.2rem; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { border-bottom: 1px solid #d0d7de;
padding-bottom: .3rem; margin-top: 2.2rem; } .sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: .8rem 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #fbfcfd; }
caption { caption-side: bottom; color: #57606a; font-size: 13px; text-align: left; padding-top: .3rem; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; border-radius: 6px; }
pre { background: #f6f8fa; padding: .8rem; border-radius: 6px; overflow-x: auto; font-size: 13px; }
nav a { margin-right: .9rem; } strong { color: #0b5cad; }
code { background: #f6f8fa; padding: .1rem .3rem; border-radius: 4px; font-size: 90%; }
""".replace("PAGE_WIDTH", str(PAGE_WIDTH_PX))  # figures are drawn this wide: shown unscaled


def markdown(title: str, subtitle: str, sections: list[Section], figure_dir: Path) -> str:
    """Markdown text; figures are written as PNG files into `figure_dir`."""
    out = [f"# {title}", "", subtitle, ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        out += [line + "\n" for line in section.text]
        for item in section.items:
            out += _markdown_item(item, figure_dir) + [""]
    return "\n".join(out).rstrip() + "\n"


def _markdown_item(item: Table | Figure | Code, figure_dir: Path) -> list[str]:
    if isinstance(item, Figure):
        figure_dir.mkdir(parents=True, exist_ok=True)
        (figure_dir / f"{item.name}.png").write_bytes(item.png)
        return [f"![{item.alt}]({figure_dir.name}/{item.name}.png)"]
    if isinstance(item, Code):
        return [f"```{item.language}", item.text.rstrip(), "```"]
    lines = [_markdown_row(item.header), "|" + " --- |" * len(item.header)]
    lines += [_markdown_row(row) for row in item.rows]
    return lines + ([f"\n*{item.caption}*"] if item.caption else [])


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")
"""Characters that Markdown (or HTML inside it) would read as markup; a backslash makes each
literal (CommonMark escapes any ASCII punctuation)."""


def _markdown_row(cells: list[str]) -> str:
    """One table row; a `|` inside a cell is escaped so it cannot end the cell."""
    return "| " + " | ".join(_markdown_cell(c) for c in cells) + " |"


def _markdown_cell(cell: str) -> str:
    """A cell on one line; verbatim text with every markup character escaped."""
    escaped = MARKDOWN_SPECIAL.sub(r"\\\1", cell) if isinstance(cell, Verbatim) else cell.replace("|", "\\|")
    return escaped.replace("\r", " ").replace("\n", " ")


def html_page(title: str, subtitle: str, sections: list[Section]) -> str:
    """One HTML file with its styles and figures inside (no external requests)."""
    nav = " ".join(f'<a href="#{_anchor(s.title)}">{html.escape(s.title)}</a>' for s in sections)
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="sub">{_inline(subtitle)}</p>', f"<nav>{nav}</nav>"]
    for section in sections:
        body.append(f'<h2 id="{_anchor(section.title)}">{html.escape(section.title)}</h2>')
        body += [f"<p>{_inline(line)}</p>" for line in section.text]
        body += [_html_item(item) for item in section.items]
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _html_item(item: Table | Figure | Code) -> str:
    if isinstance(item, Figure):
        data = base64.b64encode(item.png).decode()
        return f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(item.alt)}"></p>'
    if isinstance(item, Code):
        return f"<pre><code>{html.escape(item.text)}</code></pre>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in item.header)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in item.rows)
    caption = f"<caption>{_inline(item.caption)}</caption>" if item.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(text: str) -> str:
    """A table cell: verbatim text escaped as it is, our own text with its code and bold."""
    return html.escape(text) if isinstance(text, Verbatim) else _inline(text)


def _inline(text: str) -> str:
    """Escape, then turn `code` pairs into <code> and **bold** pairs into <strong>."""
    spans = html.escape(text).split("`")
    if len(spans) % 2 == 0:  # an unpaired backtick is a character, not a code span
        spans = ["`".join(spans)]
    return "".join(f"<code>{s}</code>" if i % 2 else _bold(s) for i, s in enumerate(spans))


def _bold(text: str) -> str:
    parts = text.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())
