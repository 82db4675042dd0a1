"""The report: every part of a run folder shows up, in Markdown and in self-contained HTML."""

import json
import re

import pytest

from distil.errors import DistilError
from distil.report import build_report


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


MACHINE = {
    "cpu_model": "AMD EPYC 9654",
    "cpu_count": 2,
    "torch_cpu_capability": "AVX512",
    "cpu_flags": {"avx2": True, "avx512": True, "avx512_vnni": True},
    "versions": {"python": "3.12.3", "torch": "2.13.0", "onnxruntime": "1.32.0"},
}


def _eval(accuracy):
    return {
        "kl_teacher_student": 0.21,
        "top1_agreement": 0.9,
        "retention": accuracy / 0.95,
        "heldout_prompts": 40,
        "teacher": {
            "params": 4_000_000,
            "accuracy": 0.95,
            "bench_tokens_per_s_batch1": 100.0,
            "eval_batched_greedy_tokens_per_s": 2500.0,
            "perplexity": 1.0041,
            "accuracy_per_task": {"overall": 0.95, "add": 1.0, "sort": 0.9},
        },
        "student": {
            "params": 1_000_000,
            "accuracy": accuracy,
            "bench_tokens_per_s_batch1": 400.0,
            "eval_batched_greedy_tokens_per_s": 9000.0,
            "perplexity": 1.31,
            "accuracy_per_task": {"overall": accuracy, "add": accuracy, "sort": accuracy},
        },
        "machine": MACHINE,
        "efficiency_setup": {"machine": {**MACHINE, "load_average_1m": 0.2, "load_average_1m_after": 0.4}},
        "efficiency": {
            "teacher": {
                "params": 4_000_000,
                "bytes": 8e6,
                "tokens_per_s": 100.0,
                "latency_ms_p50": 10.0,
                "peak_memory_bytes": 3e8,
            },
            "student": {
                "params": 1_000_000,
                "bytes": 2e6,
                "tokens_per_s": 400.0,
                "latency_ms_p50": 2.5,
                "peak_memory_bytes": 2e8,
            },
            "onnx-int8": {
                "params": 1_000_000,
                "bytes": 5e5,
                "tokens_per_s": 1500.0,
                "runtime": "onnxruntime",
                "latency_ms_p50": 0.6,
            },
        },
    }


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    _write(run / "recipe.yaml", "name: demo\nteacher: {model: demo}\nstudent: {model: demo}\n")
    _write(run / "eval.json", _eval(0.9))
    _write(
        run / "train_log.jsonl", "".join(json.dumps({"step": s, "loss": 2 / s}) + "\n" for s in range(1, 20))
    )
    _write(run / "train_summary.json", {"steps": 19, "tokens_seen": 5000, "elapsed_s": 12.0, "fused": True})
    _write(
        run / "eval_samples.jsonl",
        json.dumps(
            {
                "task": "add",
                "prompt": "2+3?",
                "reference": "5",
                "teacher": "5",
                "teacher_correct": True,
                "student": "6 <b>",
                "student_correct": False,
            }
        )
        + "\n",
    )
    methods = {}
    for variant, acc in (("seq_kd", 0.7), ("ground_truth", 0.5), ("logit_kd", 0.9)):
        scores = {
            "accuracy": acc,
            "per_task": {},
            "kl_teacher_student": 1 - acc,
            "perplexity": 2 - acc,
            "top1_agreement": acc,
        }
        methods[variant] = {
            "runs": {"0": scores},
            "retention": acc / 0.95,
            **{
                key: {"mean": value, "interval": None, "margin_over_seq_kd": None}
                for key, value in scores.items()
                if key != "per_task"
            },
        }
        if variant == "logit_kd":  # the run itself
            methods[variant]["accuracy"]["margin_over_seq_kd"] = {"mean": 0.2, "interval": None}
            continue
        _write(run / "compare" / variant / "seed-0" / "eval.json", _eval(acc))
        _write(
            run / "compare" / variant / "seed-0" / "train_log.jsonl",
            json.dumps({"step": 1, "loss": 1}) + "\n",
        )
    _write(
        run / "compare" / "summary.json",
        {"methods": methods, "seeds": [0], "base_seed": 0, "teacher_accuracy": 0.95, "wall_s": 30.0},
    )
    _write(
        run / "export" / "parity.json",
        {
            "variants": [
                {
                    "name": "onnx-fp32",
                    "max_abs_logit_diff": 1e-5,
                    "top1_agreement": 1.0,
                    "accuracy": 0.9,
                    "passed": True,
                },
                {
                    "name": "onnx-int8",
                    "max_abs_logit_diff": 0.4,
                    "top1_agreement": 0.8,
                    "accuracy": 0.7,
                    "passed": False,
                },
            ]
        },
    )
    return run


def test_markdown_has_every_section_and_the_numbers(run_dir):
    md_path, _ = build_report(run_dir)
    text = md_path.read_text()
    for title in (
        "Summary",
        "Quality",
        "Efficiency",
        "Comparison",
        "Training",
        "Export parity",
        "Examples",
        "Recipe",
    ):
        assert f"## {title}" in text, title
    assert "**90.0%**" in text and "4.0x fewer parameters" in text and "4.0x more tokens" in text
    assert "busy" not in text
    assert "Exported as `onnx-int8` (onnxruntime, 0.5 MB) it generates 15.0x the teacher's" in text
    assert "| sort | 90.0% | 90.0% | 70.0% | 50.0% |" in text
    assert "| logit distillation (the run's objective) | 90.0% | 90.0 | 0.947 | +20.0 | – |" in text
    assert "**FAIL**" in text
    for figure in re.findall(r"\]\((report_files/\w+\.png)\)", text):
        assert (run_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_and_escaped(run_dir):
    _, html_path = build_report(run_dir)
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 3  # accuracy, efficiency, loss
    assert not re.search(r'src="(?!data:)', page) and "<link" not in page
    assert "6 &lt;b&gt;" in page and "<b>" not in page
    assert "<strong>90.0%</strong>" in page


def test_the_comparison_shows_data_efficiency_when_the_summary_has_it(run_dir):
    summary = json.loads((run_dir / "compare" / "summary.json").read_text())
    point = {"runs": {"0": {"accuracy": 0.6, "seconds": 40.0}}, "interval": 0.02}
    summary["data_efficiency"] = {
        "0.1": {
            "seq_kd": {**point, "mean": 0.6},
            "logit_kd": {**point, "mean": 0.65, "margin_over_seq_kd": {"mean": 0.05, "interval": 0.03}},
        },
        "1.0": {"seq_kd": {**point, "mean": 0.7}, "logit_kd": {**point, "mean": 0.9}},
    }
    summary["fraction_prompts"] = {"0.1": 120, "1.0": 1200}
    _write(run_dir / "compare" / "summary.json", summary)
    md_path, html_path = build_report(run_dir)
    comparison = md_path.read_text().split("## Comparison", 1)[1].split("\n## ", 1)[0]
    assert (
        "| training prompts | sequence-level KD (teacher text, hard labels) | logit "
        "distillation (the run's objective) |"
    ) in comparison
    assert "| 10% (120 prompts) | 60.0 ± 2.0 | 65.0 ± 2.0 |" in comparison
    assert "| 100% (1,200 prompts) | 70.0 ± 2.0 | 90.0 ± 2.0 |" in comparison
    assert "paired by seed, in points: 10% +5.0 ± 3.0." in comparison
    assert "(80 s of training and evaluation besides it)" in comparison
    assert "![Line chart of held-out accuracy against the share" in comparison
    assert (run_dir / "report_files" / "data_efficiency.png").is_file()
    assert html_path.read_text().count("data:image/png;base64,") == 4


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(DistilError, match="nothing to report"):
        build_report(tmp_path)
    with pytest.raises(DistilError, match="run folder not found"):
        build_report(tmp_path / "missing")


def test_html_renders_code_spans_as_code_not_backticks(run_dir):
    _, html_path = build_report(run_dir)
    page = html_path.read_text()
    assert "Exported as <code>onnx-int8</code>" in page and "`" not in page


def test_pipes_inside_markdown_table_cells_and_headers_are_escaped(run_dir):
    text = build_report(run_dir)[0].read_text()
    assert "| variant | max \\|Δlogit\\| | top-1 agreement |" in text


def test_perplexity_near_one_keeps_its_digits(run_dir):
    text = build_report(run_dir)[0].read_text()
    assert "| perplexity on held-out responses | 1.004 | 1.310 |" in text


def test_a_slower_student_reads_as_a_fraction_and_a_busy_machine_is_said(run_dir):
    ev = _eval(0.9)
    ev["efficiency"]["student"]["tokens_per_s"] = 90.0
    ev["efficiency_setup"]["machine"].update(load_average_1m=3.1, load_average_1m_after=2.5)
    _write(run_dir / "eval.json", ev)
    md_path, html_path = build_report(run_dir)
    text = md_path.read_text()
    assert "It generates 0.9x the teacher's tokens per second" in text and "0.9x more" not in text
    caveat = "timed while the machine was busy (load average 3.1 before, 2.5 after, on 2 cores)"
    assert text.count(caveat) == 2  # beside the summary's speed and the efficiency table
    assert caveat in html_path.read_text()


def test_both_tokens_per_second_figures_say_what_they_measure(run_dir):
    text = build_report(run_dir)[0].read_text()
    assert "| model | parameters | bytes on disk | latency/token p50 | tokens/s (batch 1) |" in text
    assert (
        "batched greedy generation of the held-out answers during eval: teacher 2,500, student 9,000 tokens/s"
    ) in text


def test_the_machine_is_named_beside_the_efficiency_figures(run_dir):
    text = build_report(run_dir)[0].read_text()
    efficiency = text.split("## Efficiency", 1)[1].split("\n## ", 1)[0]
    assert (
        "AMD EPYC 9654, 2 cores, torch kernels AVX512 (CPU has AVX2, AVX512, AVX512-VNNI); "
        "python 3.12.3, torch 2.13.0, onnxruntime 1.32.0"
    ) in efficiency


def test_one_training_curve_is_captioned_as_one_objective(run_dir):
    import shutil

    text = build_report(run_dir)[0].read_text()
    assert "Losses of different objectives" in text  # three variants, three objectives
    shutil.rmtree(run_dir / "compare")
    text = build_report(run_dir)[0].read_text()
    assert "different objectives" not in text
    assert "One curve, one objective: the student's training loss per optimizer step." in text
    _write(
        run_dir / "recipe.yaml",
        "name: demo\ndistill: {divergence: forward_kl, kd_weight: 1.0, ce_weight: 0.0}\n",
    )
    text = build_report(run_dir)[0].read_text()
    assert (
        "One curve, one objective: the student's training loss (forward_kl, kd weight 1.0, "
        "ce weight 0.0) per optimizer step."
    ) in text


def test_no_absolute_machine_path_is_shown(run_dir):
    _write(
        run_dir / "data" / "synth_summary.json",
        {
            "teacher": {
                "model": "/root/distil/src/distil/assets/demo-teacher",
                "backend": "local",
                "endpoint": "http://localhost:8000/v1",
            },
            "prompts": {"sources": {"/home/ann/prompts.jsonl": 10, "tasks": 5}},
            "responses": {"kept": 15, "requested": 15},
            "created": str(run_dir / "data" / "x.json"),
        },
    )
    _write(
        run_dir / "recipe.yaml",
        f"name: demo\noutput_dir: {run_dir}\ndata: {{train: {run_dir}/data/train.parquet}}\n",
    )
    md_path, html_path = build_report(run_dir)
    for text in (md_path.read_text(), html_path.read_text()):
        assert "/root/" not in text and "/home/" not in text and str(run_dir) not in text
        assert "demo-teacher (local) at http://localhost:8000/v1" in text
        assert "prompts.jsonl 10, tasks 5" in text and "data/x.json" in text
        assert "train: data/train.parquet" in text


def _figures():
    from distil.report import plots

    scores = {
        "overall": 0.9,
        "arithmetic": 0.8,
        "sort": 1.0,
        "reverse": 0.9,
        "convert": 0.95,
        "count": 0.7,
        "capital": 1.0,
        "element": 0.99,
    }
    per_task = {name: scores for name in ("teacher", "student", "seq_kd", "ground_truth")}
    row = {
        "params": 2e6,
        "bytes": 4e6,
        "latency_ms_p50": 5.0,
        "tokens_per_s": 180.0,
        "peak_memory_bytes": 3e8,
    }
    rows = [{"name": name, **row} for name in ("teacher", "student", "onnx", "onnx-int8")]
    log = [{"step": s, "loss": 1 / s} for s in range(1, 9)]
    curve = {0.1: (0.6, 0.03), 0.3: (0.8, None), 1.0: (0.9, 0.01)}
    curves = {name: curve for name in ("ground_truth", "seq_kd", "logit_kd")}
    return {
        "accuracy": plots.draw_accuracy(per_task),
        "efficiency": plots.draw_efficiency(rows),
        "loss": plots.draw_loss({"student": log, "seq_kd": log}),
        "data_efficiency": plots.draw_data_efficiency(curves),
    }


def test_every_plot_text_is_at_least_10_px_as_the_html_page_shows_it():
    from matplotlib.text import Text

    from distil.report import plots
    from distil.report.render import PAGE_WIDTH_PX

    for name, figure in _figures().items():
        figure.canvas.draw()
        width_px = figure.get_size_inches()[0] * plots.DPI
        shown = min(1.0, PAGE_WIDTH_PX / width_px)  # the page scales wider images down
        for text in figure.findobj(Text):
            if text.get_text().strip() and text.get_visible():
                size_px = text.get_fontsize() * plots.DPI / 72 * shown
                assert size_px >= 10, (name, text.get_text(), round(size_px, 1))


def test_the_accuracy_legend_covers_no_bar():
    figure = _figures()["accuracy"]
    figure.canvas.draw()
    axis = figure.axes[0]
    legend = axis.get_legend().get_window_extent()
    assert not legend.overlaps(axis.get_window_extent())
    assert not legend.overlaps(axis.title.get_window_extent())


HOSTILE = "Use `textContent` | never **innerHTML**: <script>alert(1)</script> & [x](y)"


def _free_form_eval():
    """A student distilled on instructions: no task family graded, the untrained student
    measured beside it, sample answers, interleaved bench ratios."""
    answers = [
        {
            "prompt": f"Question {i}?",
            "reference": "r",
            "teacher": f"teacher says {i}",
            "student": f"student says {i}",
            "untrained_student": "the the the",
        }
        for i in range(5)
    ]
    answers[1].update(prompt="Write <script> | safely", student=HOSTILE)
    return {
        "kl_teacher_student": 0.42,
        "top1_agreement": 0.61,
        "samples": 64,
        "tokens": 5120,
        "teacher": {"params": 134_515_008, "perplexity": 3.21},
        "student": {"params": 40_000_000, "perplexity": 5.73},
        "untrained_student": {
            "params": 40_000_000,
            "perplexity": 48.2,
            "kl_teacher_student": 2.91,
            "top1_agreement": 0.22,
        },
        "sample_answers": answers,
        "efficiency": {
            "teacher": {"params": 134_515_008, "tokens_per_s": 30.0},
            "student": {
                "params": 40_000_000,
                "tokens_per_s": 120.0,
                "speedup_vs_teacher": {"1": {"ratio": 4.02, "low": 3.91, "high": 4.16, "pairs": 3}},
            },
        },
    }


@pytest.fixture
def free_form_run(tmp_path):
    run = tmp_path / "run"
    _write(run / "recipe.yaml", "name: chat\nteacher: {model: smol}\nstudent: {model: smol}\n")
    _write(run / "eval.json", _free_form_eval())
    _write(
        run / "export" / "parity.json",
        {
            "variants": [  # an export that graded anyway
                {
                    "name": "onnx",
                    "max_abs_logit_diff": 1e-5,
                    "top1_agreement": 1.0,
                    "accuracy": 0.0,
                    "passed": True,
                }
            ]
        },
    )
    return run


def test_a_free_form_student_is_judged_by_perplexity_kl_and_its_untrained_self(free_form_run):
    text = build_report(free_form_run)[0].read_text()
    quality = text.split("## Quality", 1)[1].split("\n## ", 1)[0]
    assert "| metric | teacher | student | untrained student |" in quality
    assert "| perplexity on held-out responses | 3.210 | 5.730 | 48.2 |" in quality
    assert "| KL(teacher‖model) per token (nats) | – | 0.42 | 2.91 |" in quality
    assert "| top-1 agreement with the teacher | – | 61.0% | 22.0% |" in quality
    assert "(64 rows, 5,120 response tokens)" in quality
    assert (
        "KL(teacher‖student) is 0.42 nats (2.91 before training) and the student's top-1 "
        "token agrees with the teacher's 61.0% of the time (22.0% before)."
    ) in text
    assert "perplexity on the held-out responses is **5.730** (the teacher's 3.210, 48.2 before" in text
    # no task family was graded: no accuracy anywhere, not even the export's "0.0%"
    assert not re.search(r"(?<![\d.])0\.0%", text) and "accuracy" not in text.lower()
    assert "| variant | max \\|Δlogit\\| | top-1 agreement | check |" in text


def test_sample_answers_sit_side_by_side_escaped_in_markdown_and_html(free_form_run):
    md_path, html_path = build_report(free_form_run)
    text = md_path.read_text()
    samples = text.split("## Sample answers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in samples.splitlines() if line.startswith("| ")]
    assert rows[0] == "| prompt | teacher | student | untrained student |"
    assert len(rows) == 2 + 5  # header, rule, one row per answered prompt
    hostile = rows[3]
    assert len(re.split(r"(?<!\\)\|", hostile)) == 4 + 2  # four cells: no pipe escaped them
    assert hostile.startswith("| Write \\<script\\> \\| safely |")
    assert (
        "Use \\`textContent\\` \\| never \\*\\*innerHTML\\*\\*: \\<script\\>alert(1)\\</script\\>"
        " \\& \\[x\\](y)"
    ) in hostile
    page = html_path.read_text()
    assert "<script" not in page
    assert (
        "Use `textContent` | never **innerHTML**: &lt;script&gt;alert(1)&lt;/script&gt; &amp; [x](y)"
    ) in page.replace("&#x27;", "'")


def test_the_speed_ratio_comes_with_its_interval_from_interleaved_pairs(free_form_run):
    text = build_report(free_form_run)[0].read_text()
    assert (
        "It generates 4.0x more tokens per second than the teacher on this CPU at batch 1 "
        "(120 vs 30; 95% interval 3.9x–4.2x over 3 interleaved pairs)."
    ) in text
    assert "| student | 40,000,000 | 120 | 4.0x (3.9x–4.2x) |" in text
    assert "The models took turns" in text


def test_the_comparison_without_graded_tasks_shows_kl_perplexity_and_agreement(free_form_run):
    def summarised(values, margins=None):
        names = ("kl_teacher_student", "perplexity", "top1_agreement")
        return {
            name: {
                "mean": value,
                "interval": value / 10,
                "margin_over_seq_kd": None if margins is None else {"mean": margins[i], "interval": 0.05},
            }
            for i, (name, value) in enumerate(zip(names, values, strict=True))
        }

    runs = {str(s): {"accuracy": None, "per_task": {}, "seconds": 10.0} for s in (0, 1, 2)}
    methods = {
        "seq_kd": {"runs": runs, "accuracy": None, **summarised((0.5, 6.0, 0.5))},
        "logit_kd": {
            "runs": runs,
            "accuracy": None,
            **summarised((0.3, 5.5, 0.6), margins=(-0.2, -0.5, 0.1)),
        },
    }
    _write(
        free_form_run / "compare" / "summary.json",
        {"methods": methods, "seeds": [0, 1, 2], "base_seed": 0, "teacher_accuracy": None},
    )
    text = build_report(free_form_run)[0].read_text()
    comparison = text.split("## Comparison", 1)[1].split("\n## ", 1)[0]
    assert "held-out accuracy by seed" not in comparison and "–%" not in comparison
    assert (
        "| logit distillation (the run's objective) | 0.300 ± 0.030 | -0.200 ± 0.050 | "
        "5.500 ± 0.550 | -0.500 ± 0.050 | 60.0 ± 6.0 | +10.0 ± 5.0 |"
    ) in comparison
    assert (
        "Held-out KL(teacher‖student) against sequence-level KD, paired by seed (nats per "
        "token): logit distillation (the run's objective) better (-0.200 ± 0.050)."
    ) in comparison
    assert (
        "Top-1 agreement with the teacher against sequence-level KD, paired by seed "
        "(points): logit distillation (the run's objective) better (+10.0 ± 5.0)."
    ) in comparison


def test_absent_teacher_positions_are_counted_in_the_training_section(run_dir):
    md_path, _ = build_report(run_dir)
    assert "absent" not in md_path.read_text()
    _write(
        run_dir / "train_summary.json",
        {
            "steps": 19,
            "tokens_seen": 5000,
            "elapsed_s": 12.0,
            "fused": True,
            "signal_positions": {"stored": 2500, "absent": 100},
        },
    )
    md_path, _ = build_report(run_dir)
    assert (
        "100 of 2,500 positions of the signal store were absent (the teacher returned no "
        "logprobs there): the divergence skipped them."
    ) in md_path.read_text()
