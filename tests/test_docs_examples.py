"""The docs' examples are true: their Python snippets run and print what the docs say, and
every `distil` command and option they name exists.

Conventions in README.md and docs/*.md, each an HTML comment on the line before a block:
- `<!-- not run: REASON -->`: the snippet is skipped (it needs a GPU, a trained run, ...).
- `<!-- run with a server: MODEL [key KEY] -->`: a server for MODEL is started and the
  snippet's `http://127.0.0.1:8000/v1` points at it.
A `print(...)  # -> TEXT` line must print TEXT; a ```text block right after a snippet must
be its whole output. The shell blocks' commands are run, or allowed not to be with a reason,
in tests/test_shipped_recipes.py.
"""

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
SERVER = re.compile(r"<!--\s*run with a server:\s*(\S+)(?:\s+key\s+(\S+))?\s*-->")
SHOWN = re.compile(r"^(\s*)print\((.*)\)\s*#\s*->\s*(.*?)\s*$")
DOC_URL = "http://127.0.0.1:8000/v1"
SHELL = {"bash", "sh", "shell", "console"}


@dataclass
class Block:
    doc: str
    line: int
    language: str
    code: str
    marker: str
    """The HTML comment on the line before the block, if any."""
    output: str | None = None
    """A ```text block right after this one."""


def _blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        block = Block(
            where,
            index + 1,
            fence.group(1),
            "\n".join(lines[index + 1 : end]) + "\n",
            before.strip() if before.strip().startswith("<!--") else "",
        )
        if (
            block.language == "text"
            and blocks
            and blocks[-1].language == "python"
            and not "".join(lines[blocks[-1].line + blocks[-1].code.count("\n") : index]).strip("` \n")
        ):
            blocks[-1].output = block.code
        blocks.append(block)
        index = end + 1
    return blocks


ALL_BLOCKS = [block for doc in DOCS for block in _blocks(doc)]
PYTHON = [b for b in ALL_BLOCKS if b.language == "python"]


def _with_checks(code: str) -> str:
    """`print(X)  # -> TEXT` becomes a check that X prints as TEXT."""
    out = []
    for line in code.splitlines():
        shown = SHOWN.match(line)
        out.append(f"{shown.group(1)}_shows({shown.group(3)!r}, {shown.group(2)})" if shown else line)
    return "\n".join(out) + "\n"


def _shows(expected: str, *values: object) -> None:
    printed = " ".join(str(v) for v in values)
    print(printed)
    assert printed == expected, f"the docs say {expected!r}, the code prints {printed!r}"


def _run(code: str, namespace_name: str) -> str:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(code, namespace_name, "exec"), {"__name__": "__doc_example__", "_shows": _shows})
    return stdout.getvalue()


@pytest.mark.parametrize("block", PYTHON, ids=[f"{b.doc}:{b.line}" for b in PYTHON])
def test_python_snippet_runs_and_prints_what_the_docs_say(block, tmp_path, monkeypatch):
    skipped = NOT_RUN.search(block.marker)
    if skipped:
        pytest.skip(f"marked in the docs: not run: {skipped.group(1)}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code = _with_checks(block.code)
    server = SERVER.search(block.marker)
    with contextlib.ExitStack() as stack:
        if server:
            from distil.server.testing import running_server

            running = stack.enter_context(
                running_server(server.group(1), api_key=server.group(2), served_name=server.group(1))
            )
            assert DOC_URL in code, f"{block.doc}:{block.line} names no {DOC_URL}"
            code = code.replace(DOC_URL, running.base_url)
        printed = _run(code, f"{block.doc}:{block.line}")
    if block.output is not None:
        assert printed.strip() == block.output.strip()


def test_shown_output_is_checked(tmp_path):
    with pytest.raises(AssertionError, match="the docs say '3', the code prints '2'"):
        _run(_with_checks("x = 1\nprint(x + 1)  # -> 3\n"), "example")
    doc = tmp_path / "example.md"
    doc.write_text("<!-- not run: example -->\n```python\nprint(2)\n```\n\n```text\n2\n```\n")
    python, text = _blocks(doc)
    assert (python.marker, python.output, text.language) == ("<!-- not run: example -->", "2\n", "text")


def test_the_doc_conventions_are_used_as_written():
    """A misspelt marker would silently run (or skip) a snippet: every marker must parse."""
    for block in ALL_BLOCKS:
        if block.marker and "run" in block.marker:
            assert NOT_RUN.search(block.marker) or SERVER.search(block.marker), (
                f"{block.doc}:{block.line}: unknown marker {block.marker}"
            )
    assert any(SHOWN.match(line) for b in PYTHON for line in b.code.splitlines())


def _commands_named() -> list[tuple[str, list[str]]]:
    """(where, words after `distil`) for each `distil ...` in shell blocks and inline code."""
    found = []
    texts = [(f"{b.doc}:{b.line}", b.code) for b in ALL_BLOCKS if b.language in SHELL]
    for doc in DOCS:
        prose = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
        texts += [(str(doc.relative_to(ROOT)), span) for span in re.findall(r"`([^`\n]+)`", prose)]
    for where, text in texts:
        for line in text.splitlines():
            line = re.split(r"(?:^|\s)#|&&|\s\|\s", line)[0]
            for match in re.finditer(r"(?:^|[\s/])distil((?:\s+[^\s]+)+)", line):
                found.append((where, match.group(1).split()))
    return found


def _cli_commands() -> dict[str, set[str]]:
    """Every `distil` command path ('run', 'recipe check') -> its option names."""
    import click
    import typer

    from distil.cli import app

    def walk(command: click.Command, prefix: str) -> dict[str, set[str]]:
        table = {prefix: {o for p in command.params for o in p.opts + p.secondary_opts}}
        for name, sub in getattr(command, "commands", {}).items():
            table |= walk(sub, f"{prefix} {name}".strip())
        return table

    return walk(typer.main.get_command(app), "")


def test_every_distil_command_and_option_in_the_docs_exists():
    commands = _cli_commands()
    named = _commands_named()
    assert len(named) > 10
    problems = []
    for where, words in named:
        path = words[0]
        if path not in commands:
            problems.append(f"{where}: no command `distil {path}`")
            continue
        if words[1:] and f"{path} {words[1]}" in commands:
            path = f"{path} {words[1]}"
        for word in words[1:]:
            option = word.strip("[]").split("=")[0]
            if option.startswith("--") and option not in commands[path]:
                problems.append(f"{where}: `distil {path}` has no option {option}")
    assert not problems, problems
