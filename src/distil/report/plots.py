"""The report's figures, drawn with matplotlib and returned as PNG bytes.

Every figure has a title, labelled axes with units, and a legend when it compares models.
"""

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"teacher": "#4c72b0", "student": "#dd8452", "seq_kd": "#55a868",
           "ground_truth": "#8172b3"}
FALLBACK = ["#c44e52", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]


def _colour(name: str, index: int) -> str:
    return COLOURS.get(name, FALLBACK[index % len(FALLBACK)])


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def loss_curves(curves: dict[str, list[dict[str, Any]]]) -> bytes:
    """Training loss against optimizer step, one line per run."""
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for index, (label, log) in enumerate(curves.items()):
        if log:
            axis.plot([r["step"] for r in log], [r["loss"] for r in log], label=label,
                      color=_colour(label, index), linewidth=1.8)
    axis.set_title("Training loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss per response token (nats)")
    axis.grid(alpha=0.3)
    axis.legend()
    return _png(figure)


def accuracy_by_task(models: dict[str, dict[str, float]]) -> bytes:
    """Held-out accuracy per task family, grouped bars, one colour per model."""
    tasks = [t for t in next(iter(models.values())) if t != "overall"] + ["overall"]
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(max(6.5, 1.2 * len(tasks)), 3.8))
    for index, (label, scores) in enumerate(models.items()):
        positions = [i + (index - (len(models) - 1) / 2) * width for i in range(len(tasks))]
        values = [100 * scores.get(t, 0.0) for t in tasks]
        bars = axis.bar(positions, values, width, label=label, color=_colour(label, index))
        axis.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    axis.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    axis.set_ylim(0, 109)
    axis.set_ylabel("held-out accuracy (%)")
    axis.set_title("Accuracy per task")
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return _png(figure)


def _short(value: float) -> str:
    """A bar label: whole numbers from 100 up (4310, not 4.31e+03), else 3 significant digits."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def efficiency(rows: list[dict[str, Any]]) -> bytes:
    """Small multiples: parameters, size on disk, latency per token, tokens/s, peak memory."""
    panels = [("params", "parameters (millions)", 1e-6), ("bytes", "size on disk (MB)", 1e-6),
              ("latency_ms_p50", "latency per token, p50 (ms)", 1.0),
              ("tokens_per_s", "tokens/s (batch 1)", 1.0),
              ("peak_memory_bytes", "peak memory (MB)", 1e-6)]
    panels = [p for p in panels if any(r.get(p[0]) is not None for r in rows)]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.4), squeeze=False)
    names = [r["name"] for r in rows]
    for axis, (key, title, scale) in zip(axes[0], panels, strict=True):
        values = [(r.get(key) or 0) * scale for r in rows]
        bars = axis.bar(range(len(rows)), values,
                        color=[_colour(n, i) for i, n in enumerate(names)])
        axis.bar_label(bars, labels=[_short(v) for v in values], fontsize=7, padding=1)
        axis.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
        axis.margins(y=0.15)
    figure.suptitle("Efficiency on this machine's CPU (lower is better, except tokens/s)", fontsize=10)
    return _png(figure)
