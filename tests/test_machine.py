"""The machine record: CPU model, instruction-set flags and versions, read from /proc/cpuinfo."""

from distil.machine import cpu_flags, describe_machine, is_busy, machine_line

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni amx_tile
"""


def test_flags_and_model_come_from_cpuinfo():
    assert cpu_flags(CPUINFO) == {
        "avx2": True,
        "avx512": True,
        "avx512_vnni": True,
        "avx_vnni": False,
        "amx": True,
    }
    assert cpu_flags("flags : fpu avx") == {
        "avx2": False,
        "avx512": False,
        "avx512_vnni": False,
        "avx_vnni": False,
        "amx": False,
    }
    machine = describe_machine(CPUINFO)
    assert machine["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert machine["cpu_flags"]["avx512_vnni"] is True
    assert set(machine["versions"]) == {"python", "torch", "transformers", "onnxruntime", "numpy"}
    assert machine["versions"]["torch"] and machine["torch_cpu_capability"]


def test_one_line_names_the_cpu_its_kernels_and_versions():
    machine = {
        **describe_machine(CPUINFO),
        "torch_cpu_capability": "AVX512",
        "cpu_count": 8,
        "versions": {"python": "3.12.1", "torch": "2.13.0", "numpy": None},
    }
    line = machine_line(machine)
    assert line.startswith(
        "Intel(R) Xeon(R) Platinum 8480+, 8 cores, torch kernels AVX512 "
        "(CPU has AVX2, AVX512, AVX512-VNNI, AMX)"
    )
    assert line.endswith("; python 3.12.1, torch 2.13.0")


def test_busy_means_load_over_half_the_cores():
    assert is_busy(1.5, 2) and not is_busy(1.0, 2) and not is_busy(None, 2)


def test_eval_json_records_the_machine(tmp_path, dataset):
    import json

    from distil.evaluate import evaluate
    from distil.recipe import validate_recipe
    from tests.conftest import recipe_dict

    recipe = validate_recipe(recipe_dict(tmp_path, dataset, eval={"max_samples": 4}))
    evaluate(recipe, student_source="recipe", output=tmp_path / "eval.json")
    machine = json.loads((tmp_path / "eval.json").read_text())["machine"]
    assert machine == describe_machine()
