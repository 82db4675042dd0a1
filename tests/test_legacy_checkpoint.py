"""The legacy checkpoint reader: a checkpoint in the layout distil wrote before training went
through accelerate's save_state (student/, optimizer.pt, scheduler.pt, rng-N.pt,
trainer_state.json) still resumes, weights, optimizer, schedule and random state alike.

`distil.train.checkpoint.load_checkpoint` is the only reader of that layout (the writer is
gone). It, and this test, go once no run folder from before save_state needs resuming.
"""

import json
import random

import numpy as np
import pytest
import torch

from distil.errors import CheckpointError
from distil.models.tiny import build_tiny
from distil.train.checkpoint import TrainerState, load_checkpoint


def _training_objects(seed: int):
    model, tokenizer = build_tiny("tiny-student", seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    return model, tokenizer, optimizer, scheduler


def _write_legacy(path, model, tokenizer, optimizer, scheduler) -> None:
    """The old layout, written by hand as the removed writer wrote it."""
    model.save_pretrained(path / "student", safe_serialization=True)
    tokenizer.save_pretrained(path / "student")
    torch.save({"optimizer": optimizer.state_dict(), "scaler": None}, path / "optimizer.pt")
    torch.save(scheduler.state_dict(), path / "scheduler.pt")
    kind, keys, *rest = np.random.get_state()
    python = random.getstate()
    torch.save(
        {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), *rest],
            "python": list(python[1]),
            "python_gauss": python[2],
        },
        path / "rng-0.pt",
    )
    (path / "trainer_state.json").write_text(
        json.dumps({"step": 3, "micro_batch": 6, "tokens_seen": 480, "total_steps": 10})
    )


def test_a_checkpoint_in_the_layout_before_save_state_resumes(tmp_path):
    model, tokenizer, optimizer, scheduler = _training_objects(seed=0)
    ids = torch.randint(0, 200, (2, 8))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    _write_legacy(tmp_path, model, tokenizer, optimizer, scheduler)
    expected_draws = (torch.rand(3), np.random.rand(3), random.random())

    fresh, _, fresh_optimizer, fresh_scheduler = _training_objects(seed=1)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    state = load_checkpoint(tmp_path, fresh, fresh_optimizer, fresh_scheduler, scaler=None)

    assert state == TrainerState(step=3, micro_batch=6, tokens_seen=480, total_steps=10)
    for (name, weight), restored in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(weight, restored), name
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    saved, loaded = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k]["exp_avg"], loaded[k]["exp_avg"]) for k in saved)
    draws = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], expected_draws[0])
    assert np.array_equal(draws[1], expected_draws[1]) and draws[2] == expected_draws[2]


def test_an_incomplete_legacy_checkpoint_is_one_clear_error(tmp_path):
    model, tokenizer, optimizer, scheduler = _training_objects(seed=0)
    _write_legacy(tmp_path, model, tokenizer, optimizer, scheduler)
    (tmp_path / "scheduler.pt").unlink()
    with pytest.raises(CheckpointError, match="cannot be restored"):
        load_checkpoint(tmp_path, model, optimizer, scheduler, scaler=None)
