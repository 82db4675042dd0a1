"""The capture stage: the teacher's top-k distributions over the training rows, stored once.

    distil capture recipes/demo.yaml          # -> RUN/signals (or capture.output)

See distil.capture.stage (the stage) and distil.capture.sources (where signals come from);
the store's format and reader are distil.signals.
"""

from distil.capture.stage import CaptureResult, capture
from distil.signals.recipe import capture_dir

__all__ = ["CaptureResult", "capture", "capture_dir"]
