"""`distil export` and `distil bench` on bad input: one clear line, a non-zero exit."""

import sys

import pytest

from distil.export import ParityError
from tests.export.conftest import distil


def _mamba(folder):
    """A tiny state-space model: a causal LM without a key/value attention cache."""
    from transformers import MambaConfig, MambaForCausalLM

    from distil.models import byte_tokenizer

    tokenizer = byte_tokenizer()
    config = MambaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        state_size=4,
        num_hidden_layers=1,
        expand=2,
        conv_kernel=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    MambaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _not_a_model(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    return tmp_path / "notes"


BAD_EXPORTS = {
    "not a model": (_not_a_model, [], "is neither a run folder (no student/config.json) nor a model"),
    "architecture": (lambda tmp: _mamba(tmp / "mamba"), [], "cannot export MambaForCausalLM to ONNX"),
    "gguf architecture": (
        lambda tmp: _mamba(tmp / "mamba"),
        ["--format", "gguf"],
        "GGUF export supports llama, mistral, qwen2, qwen3; this model is 'mamba'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_EXPORTS))
def test_bad_export_input_is_one_clear_line(tmp_path, case):
    make, options, message = BAD_EXPORTS[case]
    result = distil("export", str(make(tmp_path)), *options, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_bench_of_a_folder_without_models_is_one_clear_line(tmp_path):
    result = distil("bench", str(tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "holds no student/ and no teacher was given" in lines[0]


def test_parity_failure_exits_non_zero_with_one_red_line(monkeypatch, capsys, tiny_models):
    from distil import cli
    from distil.export import stage

    def failing(*args, **kwargs):
        raise ParityError("parity check failed for onnx-int8 (top-1 agreement 90.00% < 95.00%)")

    monkeypatch.setattr(stage, "export_run", failing)
    monkeypatch.setattr(sys, "argv", ["distil", "export", str(tiny_models["tiny-student"])])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: parity check failed"), lines


def test_help_lists_export_and_bench():
    result = distil("--help")
    assert "export" in result.stdout and "bench" in result.stdout
    export_help = distil("export", "--help").stdout
    assert "--allow-parity-failure" in export_help and "--dtype" in export_help
