"""Which engine generates text in process: transformers' `generate` (`hf`) or vLLM (`vllm`).

    check_generators(recipe)   # before any stage: one line when vLLM cannot run

Two recipe fields choose it: `synth.generator` (a local teacher's answers) and
`distill.on_policy.generator` (the student's on-policy samples; TRL's `use_vllm`). vLLM
needs its package and a CUDA GPU; where either is missing, asking for it is refused in one
line before any work, with the way on.

Where both are present, `synth.generator: vllm` runs the local teacher in vLLM's engine
(`distil.teachers.vllm_engine`: the same rendered prompts, answers read as the hf path reads
them); `distill.on_policy.generator: vllm` samples the student in an engine of its own that
takes the student's weights after every optimizer step (distil.train.vllm_sampler). Both
paths are tested on CPU against a stand-in of vLLM's API and have not yet been run with real
vLLM on a GPU.
"""

import importlib.util
from pathlib import Path

from distil.errors import DistilError
from distil.inmemory import is_memory_name
from distil.models import BUILTIN_MODELS
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


def require_vllm(field: str, alternative: str = "") -> None:
    """Refuse `field`=vllm in one line where vLLM cannot run; `alternative`: another way on,
    after `field`=hf."""
    missing = vllm_missing()
    if missing:
        raise GeneratorError(
            f"{field}=vllm needs vLLM on a CUDA GPU, and here "
            f"{' and '.join(missing)}; set {field}=hf (transformers' generate)"
            f"{alternative}"
        )


def check_generators(recipe: Recipe) -> None:
    """Refuse, before any work, a recipe whose synth or on-policy sampling asks for vLLM where
    it cannot run (`distil run`; `distil synth` and `distil train` check their own)."""
    check_synth_generator(recipe)
    check_on_policy_generator(recipe)


def check_synth_generator(recipe: Recipe) -> None:
    """Refuse synth.generator=vllm where vLLM cannot run, or for a teacher that has no files
    for vLLM to load (a built-in tiny model, a model passed in Python)."""
    if recipe.synth is None or recipe.synth.generator != "vllm":
        return
    require_vllm(
        "synth.generator",
        ", or serve the teacher with `vllm serve` and reach it through teacher.api (docs/api-teacher.md)",
    )
    model = recipe.teacher.model
    if is_memory_name(model) or (model in BUILTIN_MODELS and not Path(model).exists()):
        raise GeneratorError(
            f"synth.generator=vllm loads teacher.model from files, and {model} is built in this "
            "process; set synth.generator=hf, or save the model with save_pretrained and name "
            "its folder in teacher.model"
        )


def check_on_policy_generator(recipe: Recipe) -> None:
    """Refuse distill.on_policy.generator=vllm (on-policy training only) where vLLM cannot
    run, saying what is missing."""
    section = recipe.distill.on_policy
    if section.lmbda > 0 and section.generator == "vllm":
        require_vllm("distill.on_policy.generator")
