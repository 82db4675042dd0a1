"""Recipe section `comparison:`: what `distil run --compare` trains besides the run itself.

comparison:
  seeds: 3
  methods: [ground_truth, seq_kd, logit_kd, logit_kd_hidden, on_policy, on_policy_hidden]
  fractions: [0.1, 0.3]                            # data efficiency: [] turns it off
  fraction_methods: [ground_truth, seq_kd, logit_kd]
"""

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from distil.recipe.section import Section

CompareMethod = Literal[
    "ground_truth", "seq_kd", "logit_kd", "logit_kd_ce", "logit_kd_hidden", "on_policy", "on_policy_hidden"
]
FRACTION_METHODS: list[CompareMethod] = ["ground_truth", "seq_kd", "logit_kd"]
"""The data-efficiency methods when the recipe names none: no teacher, its text, its logits."""


class CompareSection(Section):
    """The methods `--compare` trains on the same prompts for the same steps, and how often."""

    seeds: Annotated[int, Field(ge=1)] = 3
    """Training seeds per method: the recipe's seed and the next ones. Data, store and held-out
    prompts stay those of the recipe's seed; the seed moves the batch order, sampling and
    initialisation (a built-in random tiny model is itself a function of the seed)."""
    methods: list[CompareMethod] = [
        "ground_truth",
        "seq_kd",
        "logit_kd",
        "logit_kd_hidden",
        "on_policy",
        "on_policy_hidden",
    ]
    """`ground_truth`: the tasks' reference answers, hard labels; `seq_kd`: the teacher's text,
    hard labels; `logit_kd`: the recipe's own objective (the run itself at the recipe's seed);
    `logit_kd_ce`: that objective plus cross-entropy on the teacher's text (ce_weight 1 unless
    the recipe sets one; not trained unless listed); `logit_kd_hidden`: that objective plus a
    cosine hidden-state term (weight 1 unless the recipe sets distill.hidden), from the live
    teacher; `on_policy`: that objective with distill.on_policy (lmbda 0.5 unless the recipe
    sets it); `on_policy_hidden`: on_policy plus the same hidden-state term."""
    fractions: list[float] = [0.1, 0.3]
    """Data efficiency: shares of the run's training prompts (each above 0 and below 1; the
    whole set is the main comparison) that `fraction_methods` also train on, every seed, for
    the run's steps (fewer prompts, more epochs). One seeded subset per share, chosen with
    the recipe's seed, the same for every method and seed; [] turns this part off."""
    fraction_methods: list[CompareMethod] = FRACTION_METHODS
    """The methods trained on each of `fractions`; each must be one of `methods` (its whole-set
    point). Left unset: those of ground_truth, seq_kd and logit_kd that `methods` lists."""

    @field_validator("fractions")
    @classmethod
    def _fractions_are_shares(cls, fractions: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in fractions):
            raise ValueError(
                "each fraction must be above 0 and below 1, a share of the training "
                "prompts such as [0.1, 0.3] (the whole set, 1, is the main "
                "comparison); use [] to turn the data-efficiency comparison off"
            )
        return sorted(set(fractions))

    @field_validator("fraction_methods")
    @classmethod
    def _fraction_methods_are_compared(cls, chosen: list[str], info: ValidationInfo) -> list[str]:
        if "methods" not in info.data:  # methods itself was refused: that error says it
            return chosen
        missing = [m for m in chosen if m not in info.data["methods"]]
        if missing:
            raise ValueError(
                f"{', '.join(missing)} not in comparison.methods, which trains each "
                "method's whole-set point; add them there or remove them here"
            )
        return chosen

    @model_validator(mode="after")
    def _default_fraction_methods_are_compared(self) -> "CompareSection":
        if "fraction_methods" not in self.model_fields_set:
            self.fraction_methods = [m for m in FRACTION_METHODS if m in self.methods]
        return self
