"""On-policy samples drawn by vLLM (`distill.on_policy.generator: vllm`, TRL's use_vllm),
run against a stand-in of vLLM's API on the CPU (tests/teachers/fake_vllm.py): the engine
starts on dummy weights and takes the student's; greedy samples equal the hf path's at
every step, because the weights are pushed after each optimizer step (and only then); a
LoRA student is pushed merged; a whole greedy run trains exactly as with hf; what vLLM
cannot take is refused in one line."""

import copy
import sys
import types

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from distil import generators
from distil.errors import ModelError
from distil.recipe import validate_recipe
from distil.train import engine, vllm_sampler
from distil.train.loop import next_micro_batches
from distil.train.session import prepare_session
from distil.train.stage import train
from distil.train.students import finished_student
from distil.train.vllm_sampler import VllmSampler, engine_weights, launcher_environment
from tests.conftest import recipe_dict
from tests.teachers.fake_vllm import LLM, fake_vllm_module

GREEDY = {"lmbda": 1.0, "temperature": 0.0, "max_new_tokens": 6}
LAUNCHER = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def fake_vllm(monkeypatch):
    """vllm importable and usable here, as the code under test sees it; the launcher's
    variables restored afterwards."""
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm_module())
    monkeypatch.setattr(generators, "vllm_missing", lambda: [])
    for name in LAUNCHER:
        monkeypatch.setenv(name, "unset")  # recorded, so that teardown restores it
        monkeypatch.delenv(name)
    LLM.made.clear()


def _recipe(tmp_path, dataset, generator, name="run", lora=None, **on_policy):
    raw = recipe_dict(
        tmp_path,
        dataset,
        output_dir=str(tmp_path / name),
        distill={"fused": "never", "on_policy": {**GREEDY, **on_policy, "generator": generator}},
        train={"max_steps": 4, "learning_rate": 3e-2, "log_every": 1, "save_every": 4},
    )
    if lora is not None:
        raw["student"]["lora"] = lora
    return validate_recipe(raw)


def _batches(session, steps):
    """The micro-batches of `steps` optimizer steps, the weights moved between them as an
    optimizer would (the same change in every session, so the samples stay comparable)."""
    taken = []
    for step in range(steps):
        taken.append(next_micro_batches(session)[0])
        with torch.no_grad():
            for index, parameter in enumerate(p for p in session.unwrapped().parameters() if p.requires_grad):
                generator = torch.Generator().manual_seed(100 * step + index)
                parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
        session.state.step += 1
    return taken


def test_greedy_samples_equal_the_hf_paths_and_follow_the_weights(tmp_path, dataset, fake_vllm):
    hf = prepare_session(_recipe(tmp_path, dataset, "hf"))
    expected = _batches(hf, 3)
    session = prepare_session(_recipe(tmp_path, dataset, "vllm"))
    got = _batches(session, 3)
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g.input_ids, e.input_ids) and torch.equal(g.labels, e.labels)
    assert len({tuple(b.input_ids.flatten().tolist()) for b in got}) == 3, (
        "the weights did not move the samples"
    )

    sampler = session.signal.sampler
    (engine,) = LLM.made
    assert engine.options["load_format"] == "dummy"
    assert engine.options["distributed_executor_backend"] == "external_launcher"
    assert engine.options["generation_config"] == "vllm" and engine.options["dtype"] == "float32"
    assert engine.options["max_model_len"] == 48 and engine.options["gpu_memory_utilization"] == 0.3
    assert sampler.pushes == 3 and engine.prefix_cache_resets == 3  # once per optimizer step
    network = engine.llm_engine.model_executor.driver_worker.model_runner.model
    assert network.loads[0] == {name for name, _ in network.named_parameters()}
    params = engine.requests[-1][1]
    assert (params.temperature, params.top_p, params.ignore_eos, params.detokenize) == (0.0, 1.0, True, False)
    assert params.stop_token_ids == [session.student.tokenizer.eos_token_id]
    seeds = [p.seed for _, p in engine.requests[-8:]]
    assert seeds == [seeds[0] + row for row in range(8)]

    # the step taken after the last batch is pushed once; without another, nothing more
    next_micro_batches(session)
    next_micro_batches(session)
    assert sampler.pushes == 4
    session.close()
    assert sampler.engine is None and sampler._folder is None


def test_a_lora_student_is_pushed_with_its_adapters_merged(tmp_path, dataset, fake_vllm):
    lora = {"r": 4, "alpha": 8}
    session = prepare_session(_recipe(tmp_path, dataset, "vllm", lora=lora))
    model = session.unwrapped()
    with torch.no_grad():  # adapters that change something (B starts at zero)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2, generator=torch.Generator().manual_seed(len(name)))
    pushed = dict(engine_weights(model))
    merged = finished_student(copy.deepcopy(model)).state_dict()
    assert set(pushed) == set(merged)  # (the tiny student's head is not tied)
    for name, tensor in pushed.items():
        torch.testing.assert_close(tensor, merged[name], rtol=1e-5, atol=1e-6)
    base = dict(model.named_parameters())
    name = "model.layers.0.self_attn.q_proj"
    assert not torch.allclose(pushed[f"{name}.weight"], base[f"{name}.base_layer.weight"], atol=1e-3)

    hf = prepare_session(_recipe(tmp_path, dataset, "hf", lora=lora))
    with torch.no_grad():
        for (_, a), (_, b) in zip(hf.unwrapped().named_parameters(), model.named_parameters(), strict=True):
            a.copy_(b)
    for g, e in zip(_batches(session, 2), _batches(hf, 2), strict=True):
        assert torch.equal(g.input_ids, e.input_ids)


def test_a_greedy_vllm_run_trains_as_the_hf_run(tmp_path, dataset, fake_vllm):
    for generator in ("hf", "vllm"):
        train(_recipe(tmp_path, dataset, generator, name=generator))
    logs = [(tmp_path / g / "train_log.jsonl").read_text().splitlines() for g in ("hf", "vllm")]
    losses = [[float(line.split('"loss": ')[1].split(",")[0]) for line in log] for log in logs]
    assert len(losses[0]) == 4 and losses[0] == pytest.approx(losses[1], rel=1e-5)
    a, b = (load_file(tmp_path / g / "student" / "model.safetensors") for g in ("hf", "vllm"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert LLM.made[-1].prefix_cache_resets == 4


def test_a_prompt_that_fills_max_length_is_not_sent(tmp_path, dataset, fake_vllm):
    session = prepare_session(_recipe(tmp_path, dataset, "vllm"))
    sampler = session.signal.sampler
    long = types.SimpleNamespace(sample_id="long", input_ids=list(range(5, 53)), labels=[-100] * 48)
    short = session.examples[0]
    out = sampler.sample(session.unwrapped(), [long, short], seed=7)
    assert out[0].input_ids == long.input_ids and out[0].labels == [-100] * 48  # no room left
    assert len(LLM.made[-1].requests) == 1 and LLM.made[-1].requests[0][1].seed == 8
    assert len(out[1].input_ids) <= 48


def test_weights_that_do_not_fill_the_engine_are_refused(tmp_path, dataset, fake_vllm, monkeypatch):
    full = vllm_sampler.engine_weights
    monkeypatch.setattr(vllm_sampler, "engine_weights", lambda model: list(full(model))[1:])
    session = prepare_session(_recipe(tmp_path, dataset, "vllm"))
    with pytest.raises(
        generators.GeneratorError, match=r"left at their dummy values, first 'model.embed_tokens"
    ):
        next_micro_batches(session)


def test_a_vllm_that_keeps_its_model_elsewhere_is_named(tmp_path, dataset, fake_vllm, monkeypatch):
    monkeypatch.setattr(LLM, "llm_engine", None, raising=False)
    monkeypatch.setattr(LLM, "__init__", _no_in_process_model(LLM.__init__))
    session = prepare_session(_recipe(tmp_path, dataset, "vllm"))
    with pytest.raises(
        generators.GeneratorError, match=r"vLLM 0.11.0\+fake does not expose its model in process"
    ):
        next_micro_batches(session)


def _no_in_process_model(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.llm_engine = types.SimpleNamespace(engine_core="in another process")

    return wrapped


def test_a_sharded_student_is_refused(tmp_path, dataset):
    recipe = _recipe(tmp_path, dataset, "vllm")
    fsdp = types.SimpleNamespace(distributed_type=DistributedType.FSDP)
    with pytest.raises(ModelError, match=r"generator=vllm with a sharded student \(FSDP / ZeRO-3\)"):
        engine.check_supported(fsdp, recipe)
    engine.check_supported(types.SimpleNamespace(distributed_type=DistributedType.MULTI_GPU), recipe)


def test_the_launcher_environment_keeps_what_accelerate_set(monkeypatch):
    for name in LAUNCHER:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.setenv("RANK", "3")
    launcher_environment()
    import os

    assert os.environ["RANK"] == "3" and os.environ["WORLD_SIZE"] == "1"
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and int(os.environ["MASTER_PORT"]) > 0


def test_temperature_sampling_runs_and_is_labelled(tmp_path, dataset, fake_vllm):
    session = prepare_session(_recipe(tmp_path, dataset, "vllm", temperature=1.0))
    batch = next_micro_batches(session)[0]
    assert not batch.hard_labels and (batch.labels != -100).any()
    assert LLM.made[-1].requests[0][1].temperature == 1.0
    assert isinstance(session.signal.sampler, VllmSampler)


@pytest.mark.slow
def test_a_smollm2_student_samples_as_on_the_hf_path(smollm2_gguf, fake_vllm):
    """The packaged SmolLM2 cut to two layers (its head tied to the embeddings): the first
    push fills every weight of the engine's model, and greedy samples equal the hf path's."""
    from distil.data import Example
    from distil.models import load_model
    from distil.recipe.onpolicy import OnPolicySection
    from distil.teachers.local import render_ids
    from distil.train.onpolicy import sample_responses
    from tests.conftest import SMOLLM2

    student = load_model(SMOLLM2, "student", layers=[0, 29])
    model, tokenizer = student.model, student.tokenizer
    assert model.config.tie_word_embeddings
    examples = []
    for row, question in enumerate(["What is the capital of France?", "Name a colour.", "2 + 2 ="]):
        prompt = render_ids(tokenizer, question)
        examples.append(Example(str(row), prompt + [1], [-100] * len(prompt) + [1]))
    config = OnPolicySection(**GREEDY, generator="vllm")
    sampler = VllmSampler(tokenizer, config, 64, "no", lambda: 0)
    got = sampler.sample(model, examples, seed=3)
    expected = sample_responses(
        model, examples, config, tokenizer.eos_token_id, tokenizer.pad_token_id, 64, 3
    )
    assert [e.input_ids for e in got] == [e.input_ids for e in expected]
    assert [e.labels for e in got] == [e.labels for e in expected]
    assert all(sum(label != -100 for label in e.labels) == 6 for e in got)  # six tokens, no eos
    network = LLM.made[-1].llm_engine.model_executor.driver_worker.model_runner.model
    assert network.loads[0] == {name for name, _ in network.named_parameters()}
    assert "lm_head.weight" not in network.loads[0]  # tied: the embeddings carry it
    sampler.close()


def test_a_resumed_run_starts_its_engine_on_the_checkpoints_weights(tmp_path, dataset, fake_vllm):
    import shutil

    recipe = _recipe(tmp_path, dataset, "vllm", name="straight")
    raw = recipe.model_dump(mode="json")
    raw["train"]["save_every"] = 2
    train(validate_recipe(raw))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    shutil.copytree(straight / "checkpoints" / "step-000002", killed / "checkpoints" / "step-000002")
    shutil.copy(straight / "recipe.yaml", killed / "recipe.yaml")
    raw["output_dir"] = str(killed)
    train(validate_recipe(raw), resume=True)
    a, b = (load_file(run / "student" / "model.safetensors") for run in (straight, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)


SITE = """
import os, sys
from tests.teachers import fake_vllm
sys.modules["vllm"] = fake_vllm.fake_vllm_module()
import distil.generators
distil.generators.vllm_missing = lambda: []
made = fake_vllm.LLM.__init__
def init(self, *args, **kwargs):
    made(self, *args, **kwargs)
    with open(os.path.join(os.environ["ENGINES"], os.environ["RANK"]), "a") as marker:
        marker.write(os.environ["MASTER_PORT"] + "\\n")
fake_vllm.LLM.__init__ = init
"""


@pytest.mark.slow
def test_two_processes_each_sample_with_their_engine_and_equal_one_process(tmp_path, dataset):
    """`distil train --num-processes 2` (DDP, gloo on CPU), vLLM's stand-in installed in
    every process by a sitecustomize: each process starts one engine, and the greedy run ends
    with the weights of one hf process over the same global batch."""
    import os
    import subprocess
    from pathlib import Path

    import yaml

    site, engines = tmp_path / "site", tmp_path / "engines"
    site.mkdir()
    engines.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    raw = _recipe(tmp_path, dataset, "vllm", name="two").model_dump(mode="json")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ENGINES": str(engines)}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "distil.cli", "train", "recipe.yaml", "--num-processes", "2"],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in engines.iterdir()) == ["0", "1"]  # one engine per process
    assert all(len(p.read_text().split()) == 1 for p in engines.iterdir())
    one = _recipe(tmp_path, dataset, "hf", name="one").model_dump(mode="json")
    one["train"]["batch_size"] = 16
    train(validate_recipe(one))
    a, b = (load_file(tmp_path / run / "student" / "model.safetensors") for run in ("one", "two"))
    for name, tensor in a.items():  # (two processes sum their gradients in another order)
        torch.testing.assert_close(b[name], tensor, rtol=0, atol=1e-4)


def test_parameters_vllms_own_loader_exempts_are_not_required():
    """As vLLM's track_weights_loading: a module whose quantization method post-processes
    its weights (an unquantized linear layer in vLLM) need not be filled; a norm must be."""
    network = torch.nn.Module()
    network.proj = torch.nn.Linear(2, 2)
    network.proj.quant_method = types.SimpleNamespace(process_weights_after_loading=lambda layer: None)
    network.online = torch.nn.Linear(2, 2)
    network.online.quant_method = types.SimpleNamespace(uses_meta_device=True)
    network.norm = torch.nn.LayerNorm(2)
    assert vllm_sampler.exempt_parameters(network) == {
        "proj.weight",
        "proj.bias",
        "online.weight",
        "online.bias",
    }
