"""What training does under a sharding engine, decided without one (no GPU here): the fused
loss falls back on a sharded student, a LoRA student is refused there, a sharded teacher
needs FSDP, and a launch that asked for FSDP or DeepSpeed but got plain DDP (accelerate on
CPU) is refused. The engine itself (FSDP, DeepSpeed) is not run by these tests."""

from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType

from distil.errors import ModelError
from distil.launch import LaunchError
from distil.recipe import validate_recipe
from distil.train.engine import check_engine, check_supported, fused_allowed, place_teacher, sharded
from tests.conftest import recipe_dict

FSDP = SimpleNamespace(distributed_type=DistributedType.FSDP)
ZERO3 = SimpleNamespace(
    distributed_type=DistributedType.DEEPSPEED,
    state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3)),
)
ZERO2 = SimpleNamespace(
    distributed_type=DistributedType.DEEPSPEED,
    state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=2)),
)
DDP = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU)


def test_the_fused_loss_falls_back_on_a_sharded_student():
    assert [sharded(a) for a in (FSDP, ZERO3, ZERO2, DDP)] == [True, True, False, False]
    assert fused_allowed(DDP, True, "auto") and fused_allowed(ZERO2, True, "auto")
    assert not fused_allowed(FSDP, True, "auto") and not fused_allowed(ZERO3, True, "auto")
    with pytest.raises(ModelError, match="student is sharded.*set distill.fused=auto"):
        fused_allowed(FSDP, True, "always")


def test_lora_on_a_sharded_student_and_a_sharded_teacher_under_deepspeed_are_refused(tmp_path, dataset):
    recipe = validate_recipe(
        recipe_dict(tmp_path, dataset, student={"model": "tiny-student", "lora": {"r": 2}})
    )
    check_supported(DDP, recipe)
    with pytest.raises(ModelError, match="student.lora with a sharded student"):
        check_supported(ZERO3, recipe)
    teacher = SimpleNamespace(model=object())
    assert place_teacher(DDP, teacher, "sharded") is teacher  # no FSDP: replicated, said so
    assert place_teacher(FSDP, teacher, "replicated") is teacher
    with pytest.raises(ModelError, match="not supported under DeepSpeed"):
        place_teacher(ZERO2, teacher, "sharded")


@pytest.mark.parametrize(
    ("variable", "engine"), [("ACCELERATE_USE_FSDP", FSDP), ("ACCELERATE_USE_DEEPSPEED", ZERO3)]
)
def test_a_launch_that_asked_for_sharding_and_got_ddp_is_refused(monkeypatch, variable, engine):
    """`accelerate launch --config_file fsdp2.yaml` on CPU: accelerate sets up MULTI_CPU."""
    monkeypatch.setenv(variable, "true")
    check_engine(engine)
    with pytest.raises(
        LaunchError,
        match="accelerate runs on GPUs only: here it would train "
        "as MULTI_CPU, every process holding the whole student",
    ):
        check_engine(DDP)
    monkeypatch.setenv(variable, "false")
    check_engine(DDP)
