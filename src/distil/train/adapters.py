"""A LoRA student's adapters as a PEFT folder, loadable on its base model.

    save_adapter(model, RUN / "adapter", recipe.student)   # before the adapters are merged
    base = adapter_base(RUN)                                # the model they were trained on
    student = PeftModel.from_pretrained(base, RUN / "adapter")

The folder is what `PeftModel.save_pretrained` writes (adapter_config.json,
adapter_model.safetensors with keys under `base_model.model.`), plus a README.md with the
front matter the Hub reads (`library_name: peft`, `base_model`) saying how to load the
base. `base_model_name_or_path` is the recipe's student.model; for a student cut to some
layers (student.layers) or built in (`tiny-student`, `demo`) that name alone does not load
the base, and `adapter_base` rebuilds it from RUN/recipe.yaml, the same
way training loaded it.
"""

import copy
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from distil.fsutil import atomic_directory
from distil.recipe.models import StudentSection

ADAPTER = "default"
"""The name peft gives the one adapter distil injects."""


def has_adapters(model: Any) -> bool:
    """Whether `model` carries LoRA adapters injected by distil.train.students.add_lora."""
    return ADAPTER in getattr(model, "peft_config", {})


def save_adapter(model: Any, folder: Path, student: StudentSection) -> None:
    """Write `model`'s adapters (not merged yet) into `folder` as a PEFT adapter folder; the
    folder appears in one rename."""
    from peft import get_peft_model_state_dict

    config = copy.deepcopy(model.peft_config[ADAPTER])
    config.base_model_name_or_path, config.revision = student.model, student.revision
    config.inference_mode, config.task_type = True, "CAUSAL_LM"
    weights = get_peft_model_state_dict(model, adapter_name=ADAPTER)
    weights = {
        f"base_model.model.{key}": value.detach().to("cpu", torch.float32).contiguous()
        for key, value in weights.items()
    }
    with atomic_directory(folder) as tmp:
        config.save_pretrained(str(tmp))
        save_file(weights, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "README.md").write_text(adapter_readme(student), encoding="utf-8")


def adapter_readme(student: StudentSection) -> str:
    """The adapter's card: front matter the Hub reads (`library_name: peft`, `base_model` when
    the base is a Hub model as it is, not cut to some layers), then how to load it."""
    from huggingface_hub import ModelCardData

    from distil.hub import front_matter, hub_model_id
    from distil.models import BUILTIN_MODELS

    base = hub_model_id(student.model) if student.layers is None else None
    meta = ModelCardData(
        library_name="peft", base_model=base, pipeline_tag="text-generation", tags=["distillation", "lora"]
    )

    by_name = student.layers is None and student.model not in BUILTIN_MODELS
    load = (
        f'base = AutoModelForCausalLM.from_pretrained("{student.model}")'
        if by_name
        else "base = adapter_base(RUN)  # rebuilt from RUN/recipe.yaml"
    )
    cut = f" cut to layers {student.layers}" if student.layers is not None else ""
    why = (
        ""
        if by_name
        else (
            f"\nThe base is `{student.model}`{cut}, which that name alone does not load: "
            "`distil.train.adapters.adapter_base(RUN)` rebuilds it from the run's recipe.yaml, "
            "as training loaded it.\n"
        )
    )
    return (
        f"{front_matter(meta)}# LoRA adapter (PEFT)\n\n"
        f"Trained by distil on the student `{student.model}`.\n"
        f"{why}\n```python\nfrom peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n"
        "from distil.train.adapters import adapter_base\n\n"
        f'{load}\nstudent = PeftModel.from_pretrained(base, "RUN/adapter")\n```\n'
    )


def adapter_base(run_dir: str | Path, device: str | torch.device = "cpu") -> Any:
    """The model a run's adapters were trained on (layers selected, built-in models rebuilt
    with the run's seed), from RUN/recipe.yaml; its adapters are not applied."""
    from distil.loading import load_student
    from distil.recipe import load_recipe

    recipe = load_recipe(Path(run_dir) / "recipe.yaml")
    return load_student(recipe, torch.device(device)).model
