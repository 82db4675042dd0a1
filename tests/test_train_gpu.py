"""The trainer's step on a GPU: fused AdamW, a compiled student, bf16, and no host
synchronisation from distil's code between logging steps. Skipped without CUDA."""

import os
import warnings

import pytest
import torch

import distil
from distil.recipe import validate_recipe
from distil.train.loop import next_micro_batches
from distil.train.loss import accumulate_losses
from distil.train.session import prepare_session
from tests.conftest import recipe_dict

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _step(session, batches):
    accumulate_losses(session, batches)
    session.accelerator.clip_grad_norm_(session.module.parameters(), 1.0)
    session.optimizer.step()
    session.optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("fused", ["always", "never"])
def test_a_cuda_step_compiles_uses_fused_adamw_and_never_synchronises(tmp_path, dataset, fused):
    session = prepare_session(
        validate_recipe(
            recipe_dict(
                tmp_path,
                dataset,
                distill={"divergence": "generalized_jsd", "fused": fused},
                train={"pad_multiple": 48, "grad_accum": 2},
            )
        )
    )  # max_length 48: one shape
    assert session.accelerator.device.type == "cuda"
    assert session.accelerator.mixed_precision == "bf16"
    assert session.optimizer.optimizer.defaults["fused"]
    assert session.module.model is session.student.model
    _step(session, next_micro_batches(session))  # compiles, autotunes, probes
    batches = next_micro_batches(session)  # the host-to-device copies happen here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")  # each synchronising call warns from its Python line
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _step(session, batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ours = [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if w.filename.startswith(os.path.dirname(distil.__file__)) and "synchroniz" in str(w.message)
    ]
    assert not ours, ours  # the model library's own (mask checks) are not distil's to remove
    assert all(torch.isfinite(p).all() for p in session.student.model.parameters())
