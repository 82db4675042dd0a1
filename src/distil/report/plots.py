"""The report's figures, drawn with matplotlib and returned as PNG bytes.

Every figure has a title, labelled axes with units, and a legend when it compares models.
Figures are drawn at most PAGE_WIDTH_PX wide at DPI, so the HTML page shows them at their
own size and every text stays at least MIN_TEXT_PX tall on screen.
"""

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

COLOURS = {
    "teacher": "#4c72b0",
    "student": "#dd8452",
    "logit_kd": "#dd8452",
    "seq_kd": "#55a868",
    "ground_truth": "#8172b3",
    "untrained_student": "#8c8c8c",
}
"""logit_kd is the run's own objective: the student's colour."""
FALLBACK = ["#c44e52", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
DPI = 100
PAGE_WIDTH_PX = 960
"""The widest a figure is drawn; the HTML page's text column is this wide."""
MIN_TEXT_PX = 10
FONT = {
    "font.size": 10.5,
    "axes.titlesize": 11.5,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 12,
}
"""Points; at DPI 100 a point is 1.39 px, so 10 pt is 13.9 px."""
BAR_LABEL_PT = 9
MAX_WIDTH_IN = PAGE_WIDTH_PX / DPI


def _colour(name: str, index: int) -> str:
    return COLOURS.get(name, FALLBACK[index % len(FALLBACK)])


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes at DPI; closes it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _new(width: float, height: float, rows: int = 1, columns: int = 1) -> tuple[Figure, Any]:
    with plt.rc_context(FONT):
        figure, axes = plt.subplots(
            rows, columns, figsize=(min(width, MAX_WIDTH_IN), height), squeeze=False, layout="constrained"
        )
    return figure, axes


def draw_loss(curves: dict[str, list[dict[str, Any]]]) -> Figure:
    """Training loss against optimizer step, one line per run."""
    figure, axes = _new(8, 3.8)
    axis = axes[0][0]
    with plt.rc_context(FONT):
        for index, (label, log) in enumerate(curves.items()):
            if log:
                axis.plot(
                    [r["step"] for r in log],
                    [r["loss"] for r in log],
                    label=label,
                    color=_colour(label, index),
                    linewidth=1.8,
                )
        axis.set_title("Training loss")
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("loss per response token (nats)")
        axis.grid(alpha=0.3)
        if sum(1 for log in curves.values() if log) > 1:
            axis.legend()
    return figure


def draw_accuracy(models: dict[str, dict[str, float]]) -> Figure:
    """Held-out accuracy per task family, grouped bars, one colour per model; legend above."""
    tasks = [t for t in next(iter(models.values())) if t != "overall"] + ["overall"]
    width = 0.8 / len(models)
    figure, axes = _new(max(7.0, 1.2 * len(tasks)), 4.4)
    axis = axes[0][0]
    with plt.rc_context(FONT):
        for index, (label, scores) in enumerate(models.items()):
            positions = [i + (index - (len(models) - 1) / 2) * width for i in range(len(tasks))]
            values = [100 * scores.get(t, 0.0) for t in tasks]
            bars = axis.bar(positions, values, width, label=label, color=_colour(label, index))
            axis.bar_label(
                bars, fmt="%.0f", fontsize=BAR_LABEL_PT, padding=2, rotation=90 if len(models) > 2 else 0
            )  # side by side they collide
        axis.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
        axis.set_ylim(0, 118)
        axis.set_ylabel("held-out accuracy (%)")
        axis.set_title("Accuracy per task")
        # above the axes, where no bar can be: inside, it covered the "overall" bars
        axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=len(models), frameon=False)
        axis.grid(axis="y", alpha=0.3)
    return figure


def draw_data_efficiency(curves: dict[str, dict[float, tuple[float, float | None]]]) -> Figure:
    """Held-out accuracy against the share of training prompts (log x), one line per method
    with its 95% interval as error bars. `curves`: method -> fraction -> (mean, half-width)."""
    figure, axes = _new(7.5, 4.2)
    axis = axes[0][0]
    fractions = sorted({f for points in curves.values() for f in points})
    with plt.rc_context(FONT):
        for index, (method, points) in enumerate(curves.items()):
            shares = sorted(points)
            nudge = 10 ** (0.01 * (index - (len(curves) - 1) / 2))  # side by side, not on top
            axis.errorbar(
                [f * nudge for f in shares],
                [100 * points[f][0] for f in shares],
                yerr=[100 * (points[f][1] or 0) for f in shares],
                label=method,
                color=_colour(method, index),
                marker="o",
                linewidth=1.8,
                capsize=4,
            )
        axis.set_xscale("log")
        axis.set_xticks(fractions, [f"{100 * f:g}%" for f in fractions])
        axis.minorticks_off()
        axis.set_xlabel("training prompts used (% of the run's, log scale)")
        axis.set_ylabel("held-out accuracy (%, mean ± 95% interval)")
        axis.set_title("Data efficiency: accuracy against training prompts, same steps")
        axis.grid(alpha=0.3)
        axis.legend()
    return figure


def _short(value: float) -> str:
    """A bar label: whole numbers from 100 up (4310, not 4.31e+03), else 3 significant digits."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


EFFICIENCY_PANELS = [
    ("params", "parameters (millions)", 1e-6),
    ("bytes", "size on disk (MB)", 1e-6),
    ("latency_ms_p50", "latency per token, p50 (ms)", 1.0),
    ("tokens_per_s", "tokens/s (batch 1)", 1.0),
    ("peak_memory_bytes", "peak memory (MB)", 1e-6),
]


def draw_efficiency(rows: list[dict[str, Any]]) -> Figure:
    """Small multiples, three to a row: parameters, size, latency per token, tokens/s, memory."""
    panels = [p for p in EFFICIENCY_PANELS if any(r.get(p[0]) is not None for r in rows)]
    columns = min(3, len(panels))
    grid_rows = -(-len(panels) // columns)
    figure, axes = _new(3.2 * columns, 3.3 * grid_rows + 0.4, grid_rows, columns)
    names = [r["name"] for r in rows]
    flat = [axis for row in axes for axis in row]
    with plt.rc_context(FONT):
        for axis, (key, title, scale) in zip(flat, panels, strict=False):
            values = [(r.get(key) or 0) * scale for r in rows]
            bars = axis.bar(range(len(rows)), values, color=[_colour(n, i) for i, n in enumerate(names)])
            axis.bar_label(bars, labels=[_short(v) for v in values], fontsize=BAR_LABEL_PT, padding=1)
            axis.set_xticks(range(len(rows)), names, rotation=30, ha="right")
            axis.set_title(title)
            axis.grid(axis="y", alpha=0.3)
            axis.margins(y=0.18)
        for axis in flat[len(panels) :]:
            figure.delaxes(axis)
        figure.suptitle("Efficiency on this machine's CPU (lower is better, except tokens/s)")
    return figure


def loss_curves(curves: dict[str, list[dict[str, Any]]]) -> bytes:
    """PNG of `draw_loss`."""
    return png(draw_loss(curves))


def accuracy_by_task(models: dict[str, dict[str, float]]) -> bytes:
    """PNG of `draw_accuracy`."""
    return png(draw_accuracy(models))


def data_efficiency(curves: dict[str, dict[float, tuple[float, float | None]]]) -> bytes:
    """PNG of `draw_data_efficiency`."""
    return png(draw_data_efficiency(curves))


def efficiency(rows: list[dict[str, Any]]) -> bytes:
    """PNG of `draw_efficiency`."""
    return png(draw_efficiency(rows))
