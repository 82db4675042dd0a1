"""Run the `distil` command in-process (no 3 s of imports per call) and read its one-line errors."""

import sys
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> CliResult:
    """`distil ARGS` through cli.main, as the console script runs it; its exit code and output."""
    from distil import cli

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["distil", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def assert_one_error_line(result: CliResult, message: str, code: int = 2) -> str:
    """Exit `code`, no traceback, and stderr exactly one line `error: ...` holding `message`."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.error_lines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines
    return lines[0]
