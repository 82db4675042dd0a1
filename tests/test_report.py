"""The report: every part of a run folder shows up, in Markdown and in self-contained HTML."""

import json
import re

import pytest

from distil.errors import DistilError
from distil.report import build_report


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def _eval(accuracy):
    return {"kl_teacher_student": 0.21, "top1_agreement": 0.9, "retention": accuracy / 0.95,
            "heldout_prompts": 40,
            "teacher": {"params": 4_000_000, "accuracy": 0.95, "tokens_per_s": 100.0,
                        "accuracy_per_task": {"overall": 0.95, "add": 1.0, "sort": 0.9}},
            "student": {"params": 1_000_000, "accuracy": accuracy, "tokens_per_s": 400.0,
                        "accuracy_per_task": {"overall": accuracy, "add": accuracy, "sort": accuracy}},
            "efficiency": {"teacher": {"params": 4_000_000, "bytes": 8e6, "tokens_per_s": 100.0,
                                       "latency_ms_p50": 10.0, "peak_memory_bytes": 3e8},
                           "student": {"params": 1_000_000, "bytes": 2e6, "tokens_per_s": 400.0,
                                       "latency_ms_p50": 2.5, "peak_memory_bytes": 2e8},
                           "onnx-int8": {"params": 1_000_000, "bytes": 5e5, "tokens_per_s": 1500.0,
                                         "runtime": "onnxruntime", "latency_ms_p50": 0.6}}}


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    _write(run / "recipe.yaml", "name: demo\nteacher: {model: demo}\nstudent: {model: demo}\n")
    _write(run / "eval.json", _eval(0.9))
    _write(run / "train_log.jsonl", "".join(json.dumps({"step": s, "loss": 2 / s}) + "\n"
                                            for s in range(1, 20)))
    _write(run / "train_summary.json", {"steps": 19, "tokens_seen": 5000, "elapsed_s": 12.0,
                                        "fused": True})
    _write(run / "eval_samples.jsonl", json.dumps({
        "task": "add", "prompt": "2+3?", "reference": "5", "teacher": "5", "teacher_correct": True,
        "student": "6 <b>", "student_correct": False}) + "\n")
    for variant, acc in (("seq_kd", 0.7), ("ground_truth", 0.5)):
        _write(run / "compare" / variant / "eval.json", _eval(acc))
        _write(run / "compare" / variant / "train_log.jsonl", json.dumps({"step": 1, "loss": 1}) + "\n")
    _write(run / "export" / "parity.json", {"variants": [
        {"name": "onnx-fp32", "max_abs_logit_diff": 1e-5, "top1_agreement": 1.0, "accuracy": 0.9,
         "passed": True},
        {"name": "onnx-int8", "max_abs_logit_diff": 0.4, "top1_agreement": 0.8, "accuracy": 0.7,
         "passed": False}]})
    return run


def test_markdown_has_every_section_and_the_numbers(run_dir):
    md_path, _ = build_report(run_dir)
    text = md_path.read_text()
    for title in ("Summary", "Quality", "Efficiency", "Comparison", "Training", "Export parity",
                  "Examples", "Recipe"):
        assert f"## {title}" in text, title
    assert "**90.0%**" in text and "4.0x fewer parameters" in text and "4.0x more tokens" in text
    assert "Exported as `onnx-int8` (onnxruntime, 0.5 MB) it generates 15.0x the teacher's" in text
    assert "| sort | 90.0% | 90.0% | 70.0% | 50.0% |" in text
    assert "+20.0 points" in text and "**FAIL**" in text
    for figure in re.findall(r"\]\((report_files/\w+\.png)\)", text):
        assert (run_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_and_escaped(run_dir):
    _, html_path = build_report(run_dir)
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 3  # accuracy, efficiency, loss
    assert not re.search(r'src="(?!data:)', page) and "<link" not in page
    assert "6 &lt;b&gt;" in page and "<b>" not in page
    assert "<strong>90.0%</strong>" in page


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(DistilError, match="nothing to report"):
        build_report(tmp_path)
    with pytest.raises(DistilError, match="run folder not found"):
        build_report(tmp_path / "missing")
