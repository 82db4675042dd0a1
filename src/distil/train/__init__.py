"""The train stage: the student learns the teacher's softened distributions.

    distil train recipes/tiny.yaml             # fresh run, or continue its own checkpoints

`run_training` (distil.train.stage) is the one entry of `distil train` and `distil run`.
The stage's parts, each one job: `session` (models, data, optimizer and the one
training-signal object of `signals`, batches typed in `batch`), `resume` (resume, refuse or
set aside earlier checkpoints), `loop` (optimizer steps, logging, checkpoints), `loss` (a
step's token-mean loss), `outputs` (RUN/student and the summary); `checkpoint` and `engine`
hold the resumable state.
"""

from distil.train.outputs import TrainResult
from distil.train.resume import TRAIN_OUTPUTS
from distil.train.stage import run_training, train

__all__ = ["TRAIN_OUTPUTS", "TrainResult", "run_training", "train"]
