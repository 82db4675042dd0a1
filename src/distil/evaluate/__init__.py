"""The eval stage: held-out quality of the student against the teacher, into RUN/eval.json.

    distil eval recipes/tiny.yaml

distil.evaluate.stage measures divergence, agreement and perplexity; distil.evaluate.tasks
the task accuracy of both models by greedy generation.
"""

from distil.evaluate.stage import evaluate, trained_student_dir

__all__ = ["evaluate", "trained_student_dir"]
