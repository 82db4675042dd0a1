"""Recipe section of the teacher's terms: `teacher.terms` (they travel with the data).

    teacher:
      model: some-provider-model
      terms:
        license: https://provider.example/terms      # or a licence id: apache-2.0, llama3.1
        outputs_may_train: false                     # the terms forbid training other models
        acknowledged: "written permission from the provider, ref. 2026-114"

Every synthesised row, the dataset card and the student's model card record them. A teacher
whose terms forbid training on its outputs is refused unless `acknowledged` says why this
run may; the cards then say so. See docs/provenance.md.
"""

import json

from pydantic import field_validator, model_validator

from distil.recipe.section import Section


class TermsSection(Section):
    """What the teacher's outputs may be used for, as its provider or licence says."""

    license: str | None = None
    """Licence id (e.g. apache-2.0, llama3.1) or URL of the terms the outputs come under."""
    outputs_may_train: bool | None = None
    """Whether those terms let you train other models on the outputs: true, false, or empty
    when not stated (then read them before sharing what you train)."""
    acknowledged: str | None = None
    """Your statement of why this run may train on outputs whose terms forbid it (a written
    permission, a research exemption); required when outputs_may_train is false, and
    recorded in every card."""

    @field_validator("acknowledged")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                "an empty acknowledgement acknowledges nothing; write why this run "
                "may train on these outputs, or remove the field"
            )
        return value

    @model_validator(mode="after")
    def _training_allowed(self) -> "TermsSection":
        if self.outputs_may_train is False and self.acknowledged is None:
            raise ValueError(
                f"the teacher's terms ({self.license or 'as declared'}) forbid training other "
                "models on its outputs; use another teacher, or, if you hold permission, set "
                "teacher.terms.acknowledged to a statement of it (recorded in every card)"
            )
        return self


def terms_record(terms: TermsSection) -> str:
    """The terms as one JSON string, for a provenance column."""
    return json.dumps(terms.model_dump(), sort_keys=True)


def terms_lines(terms: TermsSection) -> list[str]:
    """The terms as Markdown lines, for the dataset and model cards."""
    allowed = {True: "allowed", False: "**forbidden**", None: "not stated"}[terms.outputs_may_train]
    lines = [
        f"- terms: {terms.license or 'not declared (teacher.terms.license is empty)'}",
        f"- training other models on the teacher's outputs: {allowed}",
    ]
    if terms.acknowledged:
        lines.append(
            f"- **the teacher's terms forbid training on its outputs; this run went ahead "
            f'on the recipe\'s acknowledgement: "{terms.acknowledged}"**'
            if terms.outputs_may_train is False
            else f'- acknowledgement: "{terms.acknowledged}"'
        )
    return lines
