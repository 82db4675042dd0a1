"""The export-format registry: a format registered from outside the package is exported,
checked for parity, timed by the bench and shown in the report, with no change to distil."""

import json
import shutil

import pytest

from distil.export_formats import (
    ExportFormat,
    VariantSpec,
    default_formats,
    format_names,
    register_format,
    unregister_format,
    with_requirements,
)
from distil.recipe import ExportSection
from tests.export.toy_format import NAME, TOY


@pytest.fixture
def toy_format():
    register_format(TOY)
    yield TOY
    unregister_format(TOY.name)


def test_a_registered_format_goes_through_export_parity_bench_and_report(toy_format, tiny_models, tmp_path):
    from distil.bench import BenchSection, bench_run
    from distil.bench.run import weight_bytes
    from distil.export import export_run
    from distil.report import build_report

    run = tmp_path / "run"
    shutil.copytree(tiny_models["tiny-student"], run / "student")
    (run / "recipe.yaml").write_text("seed: 0\n")  # no teacher: the bench times the rest
    config = ExportSection(formats=[NAME], prompts_per_task=1, compared_prompts=2, max_new_tokens=4)
    result = export_run(run, config)
    (variant,) = json.loads((run / "export" / "parity.json").read_text())["variants"]
    assert (variant["name"], variant["format"], variant["kind"], variant["runtime"]) == (
        NAME,
        NAME,
        "float32",
        "pytorch",
    )
    assert variant["passed"] and variant["top1_agreement"] == 1.0
    assert variant["max_abs_logit_diff"] < 1e-5  # the same float32 weights, read back
    assert result.deployable == {NAME: run / "export" / NAME}

    efficiency = bench_run(run, BenchSection(new_tokens=2, batch_sizes=[1], repeats=1, warmup=0))[
        "efficiency"
    ]
    assert list(efficiency) == ["student", NAME]
    assert efficiency[NAME]["runtime"] == "pytorch" and efficiency[NAME]["dtype"] == "float32"
    assert efficiency[NAME]["bytes"] == weight_bytes(run / "export" / NAME) > 0

    report = build_report(run)[0].read_text()
    assert f"| {NAME} | " in report.split("## Export parity")[1]
    assert f"| {NAME} | " in report.split("## Efficiency")[1].split("## ")[0]


def test_the_recipe_and_the_cli_take_a_format_only_while_it_is_registered(toy_format):
    from distil.commands.run_folder import formats_help

    assert NAME in format_names() and NAME not in default_formats()
    assert ExportSection(formats=[NAME]).formats == [NAME]
    assert f"{NAME}: {TOY.summary}" in formats_help()
    unregister_format(NAME)
    with pytest.raises(
        ValueError,
        match=f"unknown export formats \\['{NAME}'\\] in "
        "export.formats; choose from hf, onnx, onnx-int8, gguf",
    ):
        ExportSection(formats=[NAME])
    register_format(TOY)


def test_registration_refuses_a_taken_name_and_an_unknown_requirement(toy_format):
    with pytest.raises(ValueError, match="already registered"):
        register_format(TOY)
    lonely = ExportFormat(
        name="x",
        summary="",
        variants=lambda c: [VariantSpec("x", "int8")],
        write=print,
        open=print,
        runtime="pytorch",
        requires=("tflite",),
    )
    with pytest.raises(ValueError, match="requires \\['tflite'\\], which are not registered"):
        register_format(lonely)
    with pytest.raises(ValueError, match="require 'onnx'; unregister them first"):
        unregister_format("onnx")


def test_requirements_come_first_in_registry_order():
    assert [f.name for f in with_requirements(["gguf", "onnx-int8"])] == ["onnx", "onnx-int8", "gguf"]
    assert default_formats() == ["hf", "onnx", "onnx-int8", "gguf"]
