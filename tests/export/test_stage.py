"""The export stage: files written, parity.json, and failures set aside loudly."""

import json

import pytest
import torch
from safetensors import safe_open

from distil.errors import ExportError
from distil.export import ExportSection, ParityError, ThresholdsSection, export_run
from distil.export.stage import make_export_config, resolve_export_paths
from distil.models import load_model


def test_export_writes_every_variant_and_a_passing_parity_report(exported_run):
    export = exported_run / "export"
    parity = json.loads((export / "parity.json").read_text())
    assert parity["passed"] is True
    assert parity["deployable"] == ["hf-float16", "onnx", "onnx-int8", "gguf-f16", "gguf-q8_0"]
    families = len(parity["reference"]["accuracy_by_task"])
    assert families >= 6
    assert parity["prompts"] == 6 * families
    assert parity["compared_prompts"] == min(6 * families, ExportSection().compared_prompts)
    defaults = ExportSection().thresholds
    variants = {v["name"]: v for v in parity["variants"]}
    assert list(variants) == ["hf-float16", "onnx", "onnx-int8", "gguf-f16", "gguf-q8_0"]
    for name, kind in (("hf-float16", "half"), ("onnx", "float32"), ("onnx-int8", "int8")):
        variant = variants[name]
        assert (export / variant["path"]).is_dir() and variant["passed"] and not variant["failures"]
        assert variant["thresholds"] == defaults[kind].model_dump()
        assert variant["positions"] >= 6 and 0 <= variant["accuracy"] <= 1
        assert set(variant["accuracy_by_task"]) == set(parity["reference"]["accuracy_by_task"])
        assert variant["accuracy_delta"] == pytest.approx(
            variant["accuracy"] - parity["reference"]["accuracy"]
        )
    assert (export / "README.md").is_file() and (export / "hf-float16" / "README.md").is_file()
    assert variants["onnx"]["top1_agreement"] == 1.0
    assert variants["onnx"]["max_abs_logit_diff"] < 1e-4
    assert variants["onnx-int8"]["top1_agreement"] >= defaults["int8"].min_top1_agreement


def test_half_precision_folder_is_float16_safetensors_that_load(exported_run, student):
    folder = exported_run / "export" / "hf-float16"
    (weights,) = folder.glob("*.safetensors")
    with safe_open(str(weights), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert dtypes == {torch.float16}
    loaded = load_model(str(folder), "student", dtype="auto")
    assert loaded.tokenizer.get_vocab() == student.tokenizer.get_vocab()
    reference = dict(student.model.named_parameters())
    for name, param in loaded.model.named_parameters():
        torch.testing.assert_close(param.float(), reference[name], atol=2e-3, rtol=1e-3)


def test_run_and_model_folders_resolve_to_their_export_folders(exported_run, tmp_path):
    assert resolve_export_paths(exported_run) == (exported_run / "student", exported_run / "export")
    model = exported_run / "student"
    assert resolve_export_paths(model) == (model, exported_run / "student-export")
    with pytest.raises(ExportError, match="neither a run folder"):
        resolve_export_paths(tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        resolve_export_paths(tmp_path / "missing")


def test_bad_options_name_the_field():
    assert make_export_config(dtype="bf16").dtype == "bfloat16"
    with pytest.raises(ExportError, match="dtype"):
        make_export_config(dtype="fp8")
    with pytest.raises(ExportError, match="formats"):
        make_export_config(formats=["tflite"])


def _impossible(allow: bool) -> ExportSection:
    """Only the fast safetensors export, held to a logit difference no fp16 copy can meet."""
    return ExportSection(
        formats=["hf"],
        prompts_per_task=2,
        compared_prompts=2,
        max_new_tokens=4,
        thresholds={"half": ThresholdsSection(max_abs_logit_diff=1e-9)},
        allow_parity_failure=allow,
    )


def test_a_failed_variant_is_set_aside_and_raises(tiny_models, tmp_path):
    out = tmp_path / "export"
    with pytest.raises(ParityError, match="hf-float16 .*max \\|logit diff\\|.*--allow-parity-failure"):
        export_run(tiny_models["tiny-student"], _impossible(allow=False), out=out)
    assert ParityError.exit_code not in (0, 2)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] is False and parity["deployable"] == []
    assert parity["variants"][0]["name"] == "hf-float16"
    assert parity["variants"][0]["path"] == "failed/hf-float16"
    assert (out / "failed" / "hf-float16").is_dir() and not (out / "hf-float16").exists()


def test_allowing_a_failure_finishes_but_deploys_nothing_that_failed(tiny_models, tmp_path):
    result = export_run(tiny_models["tiny-student"], _impossible(allow=True), out=tmp_path / "e")
    assert result.passed is False and result.deployable == {}
    assert (tmp_path / "e" / "failed" / "hf-float16").is_dir()
