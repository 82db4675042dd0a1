"""A local teacher that answers through vLLM's in-process engine (`synth.generator: vllm`).

    teacher = open_vllm_teacher(recipe.teacher, seed=recipe.seed, top_logprobs=5)
    completions = teacher.generate(prompts, Sampling(max_new_tokens=64, top_logprobs=5))

The prompts are rendered to token ids by the teacher's own tokenizer and chat template, as
`LocalTeacher` renders them, and handed to `vllm.LLM.generate` as token-id prompts
(`{"prompt_token_ids": ids}`). vLLM loads the weights itself from the model's folder
(safetensors only; a GGUF file or packaged model from distil's converted copy), with
remote code only when teacher.trust_remote_code allows it.

What comes back reads as the `hf` path's answers (`distil.teachers.local.read_answer`): the
ids up to the tokenizer's end-of-turn (eos) token, which is the only stop token (vLLM is
told to ignore the generation config's other eos ids, as transformers' generate is given
the tokenizer's eos alone); the text decoded by the teacher's tokenizer and cut at the
earliest stop string afterwards, the ids kept whole; top-k logprobs of the raw distribution
(temperature 1, vLLM's `raw_logprobs`), each with its token id. vLLM's `logprobs=k` gives
the sampled token plus the k most likely, so a position holds k or k + 1 entries; the k
most likely are the top. Each request of a call draws under its own seed (the sampling's
seed + its row), so an answer does not depend on how requests were batched.

Not carried: a logits bias (a watermark), which vLLM's engine here does not apply; setting
one is refused. Scoring a given completion is not offered (synth never scores).

Tested on CPU against a stand-in of vLLM's API (tests/teachers/fake_vllm.py); not yet run
with real vLLM on a GPU.
"""

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distil.errors import ModelError
from distil.generators import GeneratorError
from distil.models import DEMO_TEACHER_DIR, resolve_dtype
from distil.models.gguf import converted, gguf_path
from distil.models.loading import local_folder
from distil.recipe.models import TeacherSection
from distil.teachers.base import (
    Capabilities,
    Completion,
    NotSupportedError,
    Prompt,
    Sampling,
    TeacherError,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from distil.teachers.local import read_answer, render_ids

MAX_LOGPROBS = 20
"""vLLM's own default cap on logprobs per position; raised to the recipe's top-k when larger."""


@dataclass(frozen=True)
class EngineModel:
    """What vLLM loads for a teacher section, and how provenance names it."""

    path: str
    """The folder or hub id vLLM and the tokenizer load."""
    name: str
    """The teacher's name, as a local teacher records it (`demo` is its folder)."""
    revision: str | None
    """The hub revision to load (None for a folder)."""
    pinned: str | None
    """What pins the weights in provenance: the hub revision, or a GGUF's `sha256:<hex>`."""


def engine_model(section: TeacherSection) -> EngineModel:
    """The files vLLM loads for `section.model`: a folder, a hub id, `demo`'s folder, or the
    float32 safetensors copy distil converts a GGUF file or packaged model into. (A model
    built in process has none: `distil.generators.check_synth_generator` refuses it.)"""
    model = section.model
    if model == "demo" and not Path(model).exists():
        return EngineModel(str(DEMO_TEACHER_DIR), str(DEMO_TEACHER_DIR), None, None)
    if (file := gguf_path(model)) is not None:
        folder, sha = converted(file)
        return EngineModel(str(folder), model, None, f"sha256:{sha}")
    folder = local_folder(model)
    if folder is not None:
        return EngineModel(str(folder), model, None, None)
    return EngineModel(model, model, section.revision, section.revision)


def _tokenizer(found: EngineModel, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            found.path, revision=found.revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load the tokenizer of {found.name!r}: {first}") from None


def open_vllm_teacher(section: TeacherSection, *, seed: int, top_logprobs: int = 0) -> "VllmTeacher":
    """A vLLM engine on the teacher's weights (needs the vllm package and a CUDA GPU, which
    `distil.generators.check_synth_generator` has checked). `top_logprobs`: the largest top-k
    that will be asked for."""
    import vllm

    found = engine_model(section)
    tokenizer = _tokenizer(found, section.trust_remote_code)
    dtype = resolve_dtype(section.dtype, "teacher", torch.device("cuda"))
    max_logprobs = max(top_logprobs, MAX_LOGPROBS)
    engine = vllm.LLM(
        model=found.path,
        tokenizer=found.path,
        revision=found.revision,
        tokenizer_revision=found.revision,
        dtype=str(dtype).removeprefix("torch."),
        seed=seed,
        trust_remote_code=section.trust_remote_code,
        load_format="safetensors",
        generation_config="vllm",  # no sampling defaults from the model's generation_config
        logprobs_mode="raw_logprobs",  # the model's own distribution, as the hf path gives
        max_logprobs=max_logprobs,
    )
    return VllmTeacher(engine, vllm, tokenizer, found, max_logprobs)


def sampling_params(vllm: Any, sampling: Sampling, eos: int | None, seed: int | None) -> Any:
    """vLLM's SamplingParams for one request of `sampling`, drawn under `seed`."""
    want_logprobs = sampling.logprobs or sampling.top_logprobs > 0
    try:
        return vllm.SamplingParams(
            n=1,  # synth asks sample k of a prompt as its own request (seed + k)
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=seed,
            max_tokens=sampling.max_new_tokens,
            logprobs=sampling.top_logprobs if want_logprobs else None,
            # the tokenizer's eos alone ends an answer: ignore_eos keeps the generation
            # config's other eos ids out, stop_token_ids puts this one back
            ignore_eos=True,
            stop_token_ids=[] if eos is None else [eos],
            detokenize=False,  # the text is decoded by the teacher's tokenizer, as on the hf path
        )
    except ValueError as err:
        raise TeacherError(f"vLLM refuses the sampling {sampling.as_dict()}: {err}") from None


class VllmTeacher:
    """A local teacher whose answers vLLM generates; see the module docstring."""

    def __init__(self, engine: Any, vllm: Any, tokenizer: Any, found: EngineModel, max_logprobs: int) -> None:
        self.engine = engine
        self.vllm = vllm
        self.tokenizer = tokenizer
        self.name = found.name
        self.revision = found.pinned
        self.max_logprobs = max_logprobs
        self.version = str(getattr(vllm, "__version__", "unknown"))

    @property
    def logit_bias(self) -> None:
        """Always None: vLLM's engine here adds no bias to the logits."""
        return None

    @logit_bias.setter
    def logit_bias(self, bias: Any) -> None:
        if bias is not None:
            raise GeneratorError(
                "a logits bias (a watermark) cannot be carried into vLLM's engine in this "
                "version; set synth.generator=hf to generate with it"
            )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            logprobs=True, max_top_logprobs=self.max_logprobs, can_score=False, token_ids=True
        )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": f"vllm {self.version}",
            "model": self.name,
            "revision": self.revision,
            "endpoint": None,
        }

    def offers(self) -> list[str]:
        return [
            f"teacher {self.name} (local, vLLM {self.version} in process): top-k logprobs "
            f"up to {self.max_logprobs} with token ids; no scoring"
        ]

    def close(self) -> None:
        """Drop the engine and give its GPU memory back."""
        self.engine = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def render(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt as the model sees it (the hf path's rendering)."""
        return render_ids(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Completion]:
        return self.generate_ids([self.render(p) for p in prompts], sampling)

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], sampling: Sampling) -> list[Completion]:
        """Generate from already-tokenised prompts, one completion each, in order."""
        if self.engine is None:
            raise TeacherError("the vLLM teacher is closed")
        eos = self.tokenizer.eos_token_id
        params = [
            sampling_params(self.vllm, sampling, eos, None if sampling.seed is None else sampling.seed + row)
            for row in range(len(prompt_ids))
        ]
        prompts = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        outputs = self.engine.generate(prompts, params, use_tqdm=False)
        return [
            self._completion(output.outputs[0], len(ids), sampling)
            for output, ids in zip(outputs, prompt_ids, strict=True)
        ]

    def _completion(self, sample: Any, prompt_tokens: int, sampling: Sampling) -> Completion:
        """A `CompletionOutput` as the hf path's `Completion`."""
        answer = read_answer(self.tokenizer, list(sample.token_ids), sampling.stop)
        ids, k = answer.ids, sampling.top_logprobs
        logprobs = end_of_turn = None
        if sampling.logprobs or k > 0:
            if sample.logprobs is None:
                raise TeacherError("vLLM returned no logprobs although they were asked for")
            logprobs = tuple(self._token_logprob(token, sample.logprobs[t], k) for t, token in enumerate(ids))
            if answer.closed:  # the eos closed it, at position len(ids)
                eos = self.tokenizer.eos_token_id
                end_of_turn = self._token_logprob(eos, sample.logprobs[len(ids)], k)
        return Completion(
            text=answer.text,
            token_ids=tuple(ids),
            finish_reason=answer.finish_reason,
            usage=Usage(prompt_tokens, len(ids) + answer.closed),
            logprobs=logprobs,
            end_of_turn=end_of_turn,
        )

    def _token_logprob(self, token: int, position: dict[int, Any], k: int) -> TokenLogprob:
        """One position's `dict[token id, Logprob]` (the sampled token and the top k) as a
        TokenLogprob whose top holds the k most likely, most likely first."""
        ranked = sorted(position.items(), key=lambda item: -item[1].logprob)[:k]
        top = tuple(
            TopLogprob(int(i), self.tokenizer.decode([int(i)]), float(lp.logprob)) for i, lp in ranked
        )
        return TokenLogprob(token, self.tokenizer.decode([token]), float(position[token].logprob), top)

    def score(self, prompt: Prompt, completion: str, top_logprobs: int) -> list[TokenLogprob]:
        raise NotSupportedError(
            "the vLLM teacher generates only; score with the hf teacher (synth.generator=hf)"
        )
