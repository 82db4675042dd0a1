"""How the student is trained: LoRA adapters (peft) and gradient checkpointing.

    student: {model: Qwen/Qwen2.5-0.5B, lora: {r: 16, alpha: 32}, gradient_checkpointing: true}

Adapters are injected into the loaded model in place (it stays a transformers model, so
the training forward, the fused loss and checkpoints are the same code); only their
weights train. When training ends, `finished_student` merges them into the weights and
removes them, so RUN/student is a plain model of the original architecture that eval,
export and serve load as any other.
"""

import dataclasses

from distil.errors import ModelError
from distil.models import LoadedModel
from distil.recipe.models import LoraSection, StudentSection


def adapt_student(student: LoadedModel, section: StudentSection) -> LoadedModel:
    """The student with the section's adapters and gradient checkpointing applied."""
    model = student.model
    if section.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ModelError(
                f"{type(model).__name__} has no gradient checkpointing; set "
                "student.gradient_checkpointing=false"
            )
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if section.lora is not None:
        model = add_lora(model, section.lora)
    return dataclasses.replace(student, model=model)


def add_lora(model, lora: LoraSection):
    """Inject LoRA adapters (zero update at start: the model answers as before) and freeze
    every other weight."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ModelError(
            "student.lora needs the peft package: pip install 'distil[lora]' (or pip install peft)"
        ) from None
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules or "all-linear",
        exclude_modules=_head_names(model),
    )
    try:
        model = inject_adapter_in_model(config, model)
    except ValueError as err:
        raise ModelError(
            f"student.lora.target_modules {lora.target_modules} do not fit "
            f"{type(model).__name__} ({str(err).splitlines()[0]}); name its linear "
            "layers (e.g. q_proj, v_proj), or leave it empty for all of them"
        ) from None
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


def _head_names(model) -> list[str]:
    head = model.get_output_embeddings()
    return [name for name, module in model.named_modules() if module is head]


def finished_student(model):
    """The model to save: adapters merged into the weights and removed (no-op without)."""
    from_peft = _tuner_layers(model)
    if not from_peft:
        return model
    for name, layer in from_peft:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _tuner_layers(model) -> list:
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return []
    return [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
