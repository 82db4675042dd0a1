"""`distil synth` on the command line: bad input is one clear line and exit status 2.

Most cases run the command's entry point in this process (a child process spends its time
importing torch); one runs the real `python -m distil.cli` to show the whole path.
"""

import socket
import subprocess
import sys

import pytest
import yaml

from tests.synth.conftest import synth_recipe


def distil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distil.cli", *args], capture_output=True, text=True, timeout=300
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write(tmp_path, raw) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def api(tmp_path, seed_file, **settings) -> dict:
    raw = synth_recipe(tmp_path, seed_file)
    raw["teacher"] = {
        "model": "tiny-teacher",
        "api": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "api_key_env": None, **settings},
    }
    raw["distill"] = {"kd_weight": 0.0, "ce_weight": 1.0}
    return raw


def in_process(monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    """Run `distil ARGS` through its entry point here; exit status and output as from a child."""
    from distil.cli import main

    monkeypatch.setattr(sys, "argv", ["distil", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code or 0
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in " ".join(lines)
    assert "Traceback" not in result.stderr


def test_an_unreachable_teacher_from_the_real_command_line(tmp_path, seed_file):
    assert "--dry-run" in distil("synth", "--help").stdout
    result = distil("synth", write(tmp_path, api(tmp_path, seed_file)))
    one_line_error(result, "cannot reach the teacher at http://127.0.0.1:")


@pytest.mark.parametrize("case", ["key variable unset", "key in the recipe", "no synth"])
def test_bad_input_is_one_clear_line(tmp_path, seed_file, monkeypatch, capsys, case):
    secret = "sk-live-0123456789abcdef"
    if case == "key variable unset":
        raw = api(tmp_path, seed_file, api_key_env="DISTIL_TEST_UNSET_KEY")
        message = "the environment variable DISTIL_TEST_UNSET_KEY (teacher.api.api_key_env) is not set"
        monkeypatch.delenv("DISTIL_TEST_UNSET_KEY", raising=False)
    elif case == "key in the recipe":
        raw = api(tmp_path, seed_file, api_key_env=secret)
        message = "teacher.api.api_key_env: must name an environment variable"
    else:
        raw = synth_recipe(tmp_path, seed_file)
        raw.pop("synth")
        raw["data"]["train"] = str(seed_file)
        message = "the recipe has no synth: section"
    result = in_process(monkeypatch, capsys, "synth", write(tmp_path, raw))
    one_line_error(result, message)
    assert secret not in result.stderr + result.stdout


def test_dry_run_prints_the_estimate(tmp_path, seed_file, monkeypatch, capsys):
    raw = api(tmp_path, seed_file, price={"input_per_million": 2.5, "output_per_million": 10.0})
    result = in_process(monkeypatch, capsys, "synth", write(tmp_path, raw), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "4 to send" in result.stderr and "cost: at most 0.0004 USD" in result.stderr


def test_synth_is_not_refused_for_a_training_setting_that_run_refuses(
    tmp_path, seed_file, monkeypatch, capsys
):
    """distill.kd_weight > 0 with an API teacher cannot train (no full logits), but synth does
    not train: it runs, while `distil run` and `distil train` refuse the recipe before any work."""
    raw = api(tmp_path, seed_file)
    raw["distill"] = {"kd_weight": 1.0}
    raw["output_dir"] = str(tmp_path / "run")
    path = write(tmp_path, raw)
    result = in_process(monkeypatch, capsys, "synth", path, "--dry-run")
    assert result.returncode == 0 and "4 to send" in result.stderr, result.stderr
    for command in ("run", "train"):
        refused = in_process(monkeypatch, capsys, command, path)
        one_line_error(refused, "a teacher behind an API gives no full logits")
        assert not (tmp_path / "run").exists()
