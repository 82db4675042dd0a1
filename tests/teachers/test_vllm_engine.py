"""The local teacher in vLLM's engine (`synth.generator: vllm`), run against a stand-in of
vLLM's API (tests/teachers/fake_vllm.py, mirroring vLLM's V1 API of late 2025) on the CPU, where there is
neither vllm nor a GPU: greedy answers, token ids, finish reasons and top logprobs equal
those of the hf path; the engine and SamplingParams carry the recipe's values; synth's rows
say which engine wrote them."""

import shutil
import sys

import pytest
import torch

from distil.generators import GeneratorError
from distil.models import DEMO_TEACHER_DIR, build_tiny
from distil.recipe import validate_recipe
from distil.recipe.models import TeacherSection
from distil.synth.stage import run_synth
from distil.teachers import LocalTeacher, Sampling, Teacher
from distil.teachers import vllm_engine as engine_module
from distil.teachers.local import render_ids
from distil.teachers.vllm_engine import engine_model, open_vllm_teacher
from tests.conftest import write_jsonl
from tests.synth.conftest import SEEDS, journal_lines, outputs, synth_recipe
from tests.teachers.fake_vllm import LLM, VERSION, fake_vllm_module

PROMPTS = ["hi", "hello there, teacher", "Reverse: abc", "a much longer prompt " * 3, "y"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The tiny teacher saved as a Hugging Face folder (safetensors), for both engines."""
    path = tmp_path_factory.mktemp("teacher")
    network, tokenizer = build_tiny("tiny-teacher", seed=0)
    network.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def seed_file(tmp_path):
    return write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": p} for p in SEEDS])


def install_fake_vllm(monkeypatch):
    """vllm importable and a CUDA GPU present, as the code under test sees them."""
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm_module())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    LLM.made.clear()


def assert_same(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert (g.text, g.token_ids, g.finish_reason, g.usage) == (
            e.text,
            e.token_ids,
            e.finish_reason,
            e.usage,
        )
        pairs = list(zip(g.logprobs or (), e.logprobs or (), strict=True))
        if e.end_of_turn is not None or g.end_of_turn is not None:
            pairs.append((g.end_of_turn, e.end_of_turn))
        for a, b in pairs:
            assert (a.token_id, a.token) == (b.token_id, b.token)
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
            assert [t.token_id for t in a.top] == [t.token_id for t in b.top]
            assert [t.logprob for t in a.top] == pytest.approx([t.logprob for t in b.top], abs=1e-4)


def test_greedy_answers_equal_the_hf_paths(folder, monkeypatch):
    hf = LocalTeacher.load(str(folder), device="cpu", batch_size=2)
    sampling = Sampling(max_new_tokens=8, logprobs=True, top_logprobs=4)
    expected = hf.generate(PROMPTS, sampling)
    install_fake_vllm(monkeypatch)
    teacher = open_vllm_teacher(TeacherSection(model=str(folder), dtype="float32"), seed=0, top_logprobs=4)
    assert isinstance(teacher, Teacher)
    got = teacher.generate(PROMPTS, sampling)
    assert_same(got, expected)
    assert {c.finish_reason for c in got} == {"length"}

    # a token the first answer reaches becomes the end-of-turn token of both: answers close
    eos = hf.tokenizer.convert_ids_to_tokens(expected[0].token_ids[3])
    hf.tokenizer.eos_token = teacher.tokenizer.eos_token = eos
    expected, got = hf.generate(PROMPTS, sampling), teacher.generate(PROMPTS, sampling)
    assert_same(got, expected)
    closed = [c for c in got if c.finish_reason == "stop"]
    assert closed and all(c.end_of_turn.token_id == hf.tokenizer.eos_token_id for c in closed)
    assert all(c.usage.completion_tokens == len(c.token_ids) + 1 for c in closed)


def test_top_logprobs_are_the_raw_distributions(folder, monkeypatch):
    """Against log_softmax of the model's logits in float64, position by position."""
    install_fake_vllm(monkeypatch)
    teacher = open_vllm_teacher(TeacherSection(model=str(folder), dtype="float32"), seed=0, top_logprobs=5)
    (answer,) = teacher.generate(["Reverse: abc"], Sampling(max_new_tokens=6, top_logprobs=5))
    prompt = teacher.render("Reverse: abc")
    ids = torch.tensor([prompt + list(answer.token_ids)])
    with torch.no_grad():
        logits = LLM.made[-1].network(input_ids=ids).logits[0].double()  # (T, V)
    reference = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)  # (T_answer, V)
    for t, position in enumerate(answer.logprobs):
        values, indices = reference[t].topk(5)
        assert [top.token_id for top in position.top] == indices.tolist()
        assert [top.logprob for top in position.top] == pytest.approx(values.tolist(), abs=1e-5)
        assert position.logprob == pytest.approx(float(reference[t, position.token_id]), abs=1e-5)
        assert position.token_id == position.top[0].token_id  # greedy takes the argmax


def test_only_the_tokenizers_eos_ends_an_answer(folder, monkeypatch, tmp_path):
    """A generation_config eos id vLLM would stop at is ignored, as transformers' generate
    given the tokenizer's eos ignores it."""
    hf = LocalTeacher.load(str(folder), device="cpu")
    sampling = Sampling(max_new_tokens=8)
    (free,) = hf.generate(["hi"], sampling)
    assert free.finish_reason == "length"
    copy = shutil.copytree(folder, tmp_path / "teacher")
    extra = free.token_ids[2]
    (copy / "generation_config.json").write_text(
        f'{{"eos_token_id": [{hf.tokenizer.eos_token_id}, {extra}]}}'
    )
    install_fake_vllm(monkeypatch)
    teacher = open_vllm_teacher(TeacherSection(model=str(copy), dtype="float32"), seed=0)
    (got,) = teacher.generate(["hi"], sampling)
    assert got.token_ids == free.token_ids and got.finish_reason == "length"
    default = sys.modules["vllm"].SamplingParams(temperature=0.0, max_tokens=8)
    (stopped,) = LLM.made[-1].generate([{"prompt_token_ids": teacher.render("hi")}], default)
    assert stopped.outputs[0].stop_reason == extra  # vLLM left to itself stops there


def test_the_engine_and_its_sampling_carry_the_recipe(folder, monkeypatch, tmp_path, seed_file):
    raw = synth_recipe(
        tmp_path,
        seed_file,
        sampling={"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 5, "top_logprobs": 3},
        samples_per_prompt=2,
        generator="vllm",
    )
    raw["teacher"] = {"model": str(folder), "dtype": "float32"}
    raw["seed"] = 11
    install_fake_vllm(monkeypatch)
    run_synth(validate_recipe(raw))
    (engine,) = LLM.made
    assert engine.model == str(folder) and engine.options["tokenizer"] == str(folder)
    assert engine.options["load_format"] == "safetensors" and engine.options["trust_remote_code"] is False
    assert (engine.options["dtype"], engine.options["seed"]) == ("float32", 11)
    assert engine.options["logprobs_mode"] == "raw_logprobs" and engine.options["max_logprobs"] == 20
    tokenizer = engine.hf_tokenizer
    rows = outputs(tmp_path / "run")[0]
    prompts = {row["prompt"] for row in rows}
    assert len(engine.requests) == 2 * len(prompts) == 8
    assert {tuple(ids) for ids, _ in engine.requests} == {tuple(render_ids(tokenizer, p)) for p in prompts}
    for _, params in engine.requests:
        assert (params.temperature, params.top_p, params.max_tokens, params.logprobs) == (0.7, 0.9, 5, 3)
        assert (params.n, params.ignore_eos, params.stop_token_ids) == (1, True, [tokenizer.eos_token_id])
        assert params.detokenize is False and params.stop == []
    assert sorted(params.seed for _, params in engine.requests) == list(range(11, 19))
    assert {row["backend"] for row in rows} == {f"vllm {VERSION}"} and {row["seed"] for row in rows} == {
        11,
        12,
    }
    assert all(len(t["top"]) == 3 for row in rows for t in row["token_logprobs"])


def test_synth_rows_equal_the_hf_paths_and_name_the_engine(folder, monkeypatch, tmp_path, seed_file):
    runs = {}
    for generator in ("hf", "vllm"):
        raw = synth_recipe(tmp_path / generator, seed_file, sampling={"top_logprobs": 4}, generator=generator)
        raw["teacher"] = {"model": str(folder), "dtype": "float32"}
        if generator == "vllm":
            install_fake_vllm(monkeypatch)
        run_synth(validate_recipe(raw))
        runs[generator] = tmp_path / generator / "run"
    (hf_rows, _, hf_summary), (rows, _, summary) = outputs(runs["hf"]), outputs(runs["vllm"])
    same = ("prompt", "response", "finish_reason", "prompt_tokens", "completion_tokens", "seed")
    assert [[r[k] for k in same] for r in rows] == [[r[k] for k in same] for r in hf_rows]
    for row, hf_row in zip(rows, hf_rows, strict=True):
        assert [t["token_id"] for t in row["token_logprobs"]] == [
            t["token_id"] for t in hf_row["token_logprobs"]
        ]
        assert [t["logprob"] for t in row["token_logprobs"]] == pytest.approx(
            [t["logprob"] for t in hf_row["token_logprobs"]], abs=1e-4
        )
    assert {r["backend"] for r in hf_rows} == {"local"} and {r["backend"] for r in rows} == {
        f"vllm {VERSION}"
    }
    assert summary["teacher"]["backend"] == f"vllm {VERSION}" and hf_summary["teacher"]["backend"] == "local"
    assert {line["request"]["endpoint"] for line in journal_lines(runs["vllm"])} == {"local (vllm)"}
    assert {line["request"]["endpoint"] for line in journal_lines(runs["hf"])} == {"local"}
    assert {r["request_key"] for r in rows}.isdisjoint(r["request_key"] for r in hf_rows)


def test_auto_dtype_is_bfloat16_on_a_gpu_that_has_it(folder, monkeypatch):
    install_fake_vllm(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    open_vllm_teacher(TeacherSection(model=str(folder)), seed=3)
    assert LLM.made[-1].options["dtype"] == "bfloat16" and LLM.made[-1].options["seed"] == 3


def test_what_vllm_loads_for_each_kind_of_model(folder, monkeypatch, tmp_path):
    assert engine_model(TeacherSection(model="demo")).path == str(DEMO_TEACHER_DIR)
    found = engine_model(TeacherSection(model=str(folder)))
    assert (found.path, found.name, found.revision) == (str(folder), str(folder), None)
    hub = engine_model(TeacherSection(model="org/name", revision="v1"))
    assert (hub.path, hub.revision, hub.pinned) == ("org/name", "v1", "v1")
    monkeypatch.setattr(engine_module, "gguf_path", lambda model: tmp_path / "m.gguf")
    monkeypatch.setattr(engine_module, "converted", lambda path: (tmp_path / "converted", "abc"))
    packaged = engine_model(TeacherSection(model="smollm2-135m-instruct"))
    assert (packaged.path, packaged.name, packaged.pinned) == (
        str(tmp_path / "converted"),
        "smollm2-135m-instruct",
        "sha256:abc",
    )


def test_a_logits_bias_is_refused_not_dropped(folder, monkeypatch):
    install_fake_vllm(monkeypatch)
    teacher = open_vllm_teacher(TeacherSection(model=str(folder), dtype="float32"), seed=0)
    assert teacher.logit_bias is None
    with pytest.raises(GeneratorError, match="cannot be carried into vLLM's engine"):
        teacher.logit_bias = lambda ids: torch.zeros(ids.shape[0], 8)
    assert not teacher.capabilities.can_score and not teacher.capabilities.logits


def test_a_position_with_the_sampled_token_outside_the_top_k(folder, monkeypatch):
    """vLLM's `logprobs=k` gives k + 1 entries when the sampled token is not among the k most
    likely: the top keeps the k most likely, the token's own logprob is the sampled one's."""
    fake = fake_vllm_module()
    install_fake_vllm(monkeypatch)
    teacher = open_vllm_teacher(TeacherSection(model=str(folder), dtype="float32"), seed=0)
    eos = teacher.tokenizer.eos_token_id
    logprob = fake.Logprob
    positions = [
        {40: logprob(-3.0, 7, "x"), 41: logprob(-0.5, 1, "y"), 42: logprob(-1.5, 2, "z")},
        {eos: logprob(-0.1, 1, ""), 43: logprob(-2.5, 2, "w")},
    ]
    sample = fake.CompletionOutput(0, "", [40, eos], -3.1, positions, "stop", None)
    got = teacher._completion(sample, prompt_tokens=4, sampling=Sampling(top_logprobs=2))
    (position,) = got.logprobs
    assert (position.token_id, position.logprob) == (40, -3.0)
    assert [(t.token_id, t.logprob) for t in position.top] == [(41, -0.5), (42, -1.5)]
    assert [t.token for t in position.top] == [teacher.tokenizer.decode([41]), teacher.tokenizer.decode([42])]
    assert (got.token_ids, got.finish_reason, got.usage.completion_tokens) == ((40,), "stop", 2)
    assert got.end_of_turn.token_id == eos and [t.token_id for t in got.end_of_turn.top] == [eos, 43]
