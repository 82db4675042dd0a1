"""Running a recipe's stages in order over its run folder (`distil run`), above the stages.

distil.pipeline.run skips finished stages and redoes changed ones; distil.pipeline.compare
trains the comparison students (sequence-level KD, ground truth) through the same stages.
"""

from distil.pipeline.run import Stage, default_stages, run_pipeline, stage_fingerprint

__all__ = ["Stage", "default_stages", "run_pipeline", "stage_fingerprint"]
