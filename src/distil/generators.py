"""Which engine generates text in process: transformers' `generate` (`hf`) or vLLM (`vllm`).

    check_generators(recipe)   # before any stage: one line when vLLM cannot run

Two recipe fields choose it: `synth.generator` (a local teacher's answers) and
`distill.on_policy.generator` (the student's on-policy samples; TRL's `use_vllm`). vLLM
needs its package and a CUDA GPU; where either is missing, asking for it is refused in one
line before any work, with the way on. Where both are present it is refused too, naming what
works today: this version has no in-process vLLM path (a teacher behind `vllm serve` is
reached through teacher.api; on-policy samples are drawn with `hf`).
"""

import importlib.util

from distil.errors import DistilError
from distil.recipe import Recipe


class GeneratorError(DistilError):
    """The recipe asks for a generation engine this machine or this version cannot run."""


def vllm_missing() -> list[str]:
    """What this machine lacks for vLLM, in words (empty when it has both)."""
    import torch

    missing = []
    if importlib.util.find_spec("vllm") is None:
        missing.append("the vllm package is not installed")
    if not torch.cuda.is_available():
        missing.append("there is no CUDA GPU (torch.cuda.is_available() is false)")
    return missing


def require_generator(field: str, value: str, alternative: str = "") -> None:
    """Refuse `field`=vllm in one line; `alternative`: another way on, after `field`=hf."""
    if value != "vllm":
        return
    missing = vllm_missing()
    if missing:
        raise GeneratorError(
            f"{field}=vllm needs vLLM on a CUDA GPU, and here "
            f"{' and '.join(missing)}; set {field}=hf (transformers' generate)"
            f"{alternative}"
        )
    raise GeneratorError(
        f"{field}=vllm: this version of distil has no in-process vLLM path "
        f"yet; set {field}=hf (transformers' generate){alternative}"
    )


def check_generators(recipe: Recipe) -> None:
    """Refuse, before any work, a recipe whose synth or on-policy sampling asks for vLLM where
    it cannot run (`distil run`; `distil synth` and `distil train` check their own)."""
    check_synth_generator(recipe)
    check_on_policy_generator(recipe)


def check_synth_generator(recipe: Recipe) -> None:
    """Refuse synth.generator=vllm where it cannot run."""
    if recipe.synth is not None:
        require_generator(
            "synth.generator",
            recipe.synth.generator,
            ", or serve the teacher with `vllm serve` and reach it through teacher.api (docs/api-teacher.md)",
        )


def check_on_policy_generator(recipe: Recipe) -> None:
    """Refuse distill.on_policy.generator=vllm where it cannot run (on-policy training only)."""
    if recipe.distill.on_policy.lmbda > 0:
        require_generator("distill.on_policy.generator", recipe.distill.on_policy.generator)
