"""What a Python caller is told while training runs: each log line, each held-out
evaluation, each checkpoint (distil.Distiller's `callbacks`).

    class Printer:
        def on_log(self, step: int, logs: dict[str, float]) -> None: print(step, logs)

A callback is any object with some of the methods of `Callback` (the others are not
called); only the main process calls them, after the log line or checkpoint is written.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Callback:
    """The three moments a callback can hear of; subclass it, or give any object the
    methods you need."""

    def on_log(self, step: int, logs: dict[str, float]) -> None:
        """A log line (train_log.jsonl's record without its step): loss, lr, grad_norm,
        tokens_per_s, elapsed_s, and the held-out figures at an eval_every step."""

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        """The held-out figures of a train.eval_every step (eval_loss, eval_ce, eval_kl...)."""

    def on_save(self, step: int, checkpoint: Path) -> None:
        """A checkpoint folder written complete (RUN/checkpoints/step-NNNNNN)."""


@dataclass(frozen=True)
class Callbacks:
    """The callbacks of one training, called in the order given."""

    items: Sequence[Any] = ()

    def log(self, step: int, logs: dict[str, float]) -> None:
        self._call("on_log", step, logs)

    def evaluate(self, step: int, metrics: dict[str, float]) -> None:
        self._call("on_evaluate", step, metrics)

    def save(self, step: int, checkpoint: Path) -> None:
        self._call("on_save", step, checkpoint)

    def _call(self, method: str, *arguments: Any) -> None:
        for item in self.items:
            hook = getattr(item, method, None)
            if hook is not None:
                hook(*arguments)
