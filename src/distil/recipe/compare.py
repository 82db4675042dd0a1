"""Recipe section `comparison:`: what `distil run --compare` trains besides the run itself.

    comparison:
      seeds: 3
      methods: [ground_truth, seq_kd, logit_kd, logit_kd_hidden, on_policy, on_policy_hidden]
"""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import Section

CompareMethod = Literal["ground_truth", "seq_kd", "logit_kd", "logit_kd_hidden", "on_policy",
                        "on_policy_hidden"]


class CompareSection(Section):
    """The methods `--compare` trains on the same prompts for the same steps, and how often."""

    seeds: Annotated[int, Field(ge=1)] = 3
    """Training seeds per method: the recipe's seed and the next ones. Data, store and held-out
    prompts stay those of the recipe's seed; the seed moves the batch order, sampling and
    initialisation (a built-in random tiny model is itself a function of the seed)."""
    methods: list[CompareMethod] = ["ground_truth", "seq_kd", "logit_kd", "logit_kd_hidden",
                                    "on_policy", "on_policy_hidden"]
    """`ground_truth`: the tasks' reference answers, hard labels; `seq_kd`: the teacher's text,
    hard labels; `logit_kd`: the recipe's own objective (the run itself at the recipe's seed);
    `logit_kd_hidden`: that objective plus a cosine hidden-state term (weight 1 unless the
    recipe sets distill.hidden), from the live teacher; `on_policy`: that objective with
    distill.on_policy (lmbda 0.5 unless the recipe sets it); `on_policy_hidden`: on_policy
    plus the same hidden-state term."""
