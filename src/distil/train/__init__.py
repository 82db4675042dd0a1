"""The train stage: the student learns the teacher's softened distributions.

    distil train recipes/tiny.yaml             # fresh run, or continue its own checkpoints

distil.train.stage holds the loop; distil.train.checkpoint the resumable state.
"""

from distil.train.stage import TRAIN_OUTPUTS, TrainResult, resumable, train, train_or_resume

__all__ = ["TRAIN_OUTPUTS", "TrainResult", "resumable", "train", "train_or_resume"]
