"""A stand-in for the part of vLLM's offline API that distil's vLLM teacher uses, running a
transformers model on the CPU, so that path is tested where there is neither vllm nor a GPU.

    module = fake_vllm_module()          # put it in sys.modules["vllm"]
    llm = module.LLM(model=folder, dtype="float32", logprobs_mode="raw_logprobs")
    outputs = llm.generate([{"prompt_token_ids": ids}], [module.SamplingParams(max_tokens=8)])

It mirrors vLLM's API as read in vllm-project/vllm's sources: vllm/outputs.py,
vllm/logprobs.py, vllm/sampling_params.py and vllm/v1/core/sched/utils.py of the main branch
in late 2025 (the V1 engine, 0.11 onward), and `LLM` of vllm/entrypoints/llm.py as in the
0.9 line, names and types as there:
- `LLM(model, *, tokenizer, revision, tokenizer_revision, dtype, seed, trust_remote_code,
  **engine_args)`; `generate(prompts, sampling_params, *, use_tqdm)` takes token-id prompts
  (`{"prompt_token_ids": [...]}`, vLLM's TokensPrompt) and one SamplingParams per prompt,
  and returns one `RequestOutput` per prompt, in prompt order.
- `RequestOutput(request_id, prompt, prompt_token_ids, prompt_logprobs, outputs, finished)`;
  `CompletionOutput(index, text, token_ids, cumulative_logprob, logprobs, finish_reason,
  stop_reason)`.
- `logprobs` is `list[dict[int, Logprob]]`, one dict per generated token (the stop token
  included): `SamplingParams(logprobs=k)` gives the sampled token plus the k most likely, so
  k or k + 1 entries; `Logprob(logprob, rank, decoded_token)`, rank counted from 1;
  `logprobs=0` gives the sampled token alone. Values are the raw distribution's
  (`logprobs_mode="raw_logprobs"`, vLLM's default): log_softmax of the logits, before
  temperature and top-p.
- A prompt of max_model_len tokens or more is refused; a sequence reaching max_model_len
  stops there ("length").
- Stopping as `check_stop`: the length cap first, then the eos (unless `ignore_eos`), then
  `stop_token_ids` (`stop_reason` = that id); the stopping token stays in `token_ids`. The
  model folder's generation_config eos ids join `stop_token_ids` unless `ignore_eos`
  (`SamplingParams.update_from_generation_config`).
- `SamplingParams` validates as vLLM does the fields used here (temperature in [0, 2], top_p
  in (0, 1], n = 1 when greedy, max_tokens >= 1, logprobs <= the engine's max_logprobs);
  unknown keywords are a TypeError in both.
- An in-process engine (the `external_launcher` executor, TRL's colocate mode) keeps its
  model at `llm_engine.model_executor.driver_worker.model_runner.model`, whose
  `load_weights(iterable of (name, tensor))` copies checkpoint-named tensors into it and
  returns the names loaded (vllm/model_executor/models/llama.py); `load_format="dummy"`
  starts from random weights; `reset_prefix_cache()` drops cached keys and values.
Decoding runs one sequence at a time without a KV cache (a tiny model, a few tokens).
"""

import importlib.machinery
import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

VERSION = "0.11.0+fake"
ENGINE_ARGS = {
    "load_format",
    "generation_config",
    "logprobs_mode",
    "max_logprobs",
    "gpu_memory_utilization",
    "max_model_len",
    "enforce_eager",
    "distributed_executor_backend",
    "enable_prefix_caching",
}
"""EngineArgs this stand-in accepts besides LLM's named ones; any other is a TypeError."""


class VLLMValidationError(ValueError):
    """vLLM's own validation error is a ValueError."""


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class SamplingParams:
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logit_bias: dict[int, float] | None = None

    def __post_init__(self) -> None:
        self.stop = [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else self.stop
        self.stop_token_ids = list(dict.fromkeys(self.stop_token_ids or []))
        if not 0.0 <= self.temperature <= 2.0:
            raise VLLMValidationError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise VLLMValidationError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise VLLMValidationError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.logprobs is not None and self.logprobs != -1 and self.logprobs < 0:
            raise VLLMValidationError(f"logprobs must be non-negative or -1, got {self.logprobs}.")
        if self.stop and not self.detokenize:
            raise VLLMValidationError("stop strings are only supported when detokenize is True.")
        if self.temperature < 1e-5:  # greedy
            self.top_p, self.top_k, self.min_p = 1.0, 0, 0.0
            if self.n > 1:
                raise VLLMValidationError(f"n must be 1 when using greedy sampling, got {self.n}.")


class LLM:
    """The engine: a transformers model loaded from `model` (safetensors only when
    load_format="safetensors"). Keeps what it was built with (`options`) and asked
    (`requests`); `LLM.made` lists every engine built, newest last."""

    made: "list[LLM]" = []  # noqa: RUF012
    NAMED = {"tokenizer": None, "revision": None, "tokenizer_revision": None, "dtype": "auto", "seed": None}
    NAMED |= {"trust_remote_code": False}

    def __init__(self, model: str, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self.NAMED) - ENGINE_ARGS
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got unexpected keyword arguments {sorted(unknown)}")
        self.model = model
        self.options = {**self.NAMED, **kwargs}
        self.requests: list[tuple[list[int], SamplingParams]] = []
        self.network = self._load(model)
        self.prefix_cache_resets = 0
        worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=EngineModel(self.network)))
        self.llm_engine = types.SimpleNamespace(model_executor=types.SimpleNamespace(driver_worker=worker))
        self.hf_tokenizer = AutoTokenizer.from_pretrained(self.options["tokenizer"] or model)
        config = Path(model) / "generation_config.json"
        eos = json.loads(config.read_text()).get("eos_token_id") if config.is_file() else None
        self.config_eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        LLM.made.append(self)

    def _load(self, model: str) -> torch.nn.Module:
        """The weights from the folder, or random ones from its config alone when
        load_format="dummy" (vLLM's dummy loader; they are meant to be overwritten)."""
        dtype = self.options["dtype"]
        dtype = torch.float32 if dtype == "auto" else getattr(torch, dtype)
        if self.options.get("load_format") == "dummy":
            config = AutoConfig.from_pretrained(model)
            with torch.random.fork_rng():
                torch.manual_seed(1234)
                return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
        return AutoModelForCausalLM.from_pretrained(
            model,
            dtype=dtype,
            use_safetensors=self.options.get("load_format") == "safetensors",
            trust_remote_code=self.options["trust_remote_code"],
        ).eval()

    def reset_prefix_cache(self) -> bool:
        self.prefix_cache_resets += 1
        return True

    def generate(
        self, prompts: list[dict[str, list[int]]], sampling_params: Any = None, *, use_tqdm: bool = True
    ) -> list[RequestOutput]:
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        outputs = []
        for index, (prompt, param) in enumerate(zip(prompts, params, strict=True)):
            ids = list(prompt["prompt_token_ids"])
            self.requests.append((ids, param))
            outputs.append(RequestOutput(str(index), None, ids, None, [self._complete(ids, param)], True))
        return outputs

    @torch.no_grad()
    def _complete(self, prompt: list[int], params: SamplingParams) -> CompletionOutput:
        limit = self.options.get("max_logprobs", 20)
        if params.logprobs is not None and params.logprobs > limit:
            raise VLLMValidationError(
                f"Requested sample logprobs of {params.logprobs}, which is greater than max allowed: {limit}"
            )
        max_model_len = self.options.get("max_model_len") or self.network.config.max_position_embeddings
        if len(prompt) >= max_model_len:
            raise VLLMValidationError(
                f"The decoder prompt (length {len(prompt)}) is longer than the maximum model "
                f"length of {max_model_len}."
            )
        stop_ids = list(params.stop_token_ids or [])
        if not params.ignore_eos:
            stop_ids += [e for e in self.config_eos if e != self.hf_tokenizer.eos_token_id]
        seed = params.seed if params.seed is not None else self.options["seed"] or 0
        generator = torch.Generator().manual_seed(seed)
        ids: list[int] = []
        logprobs: list[dict[int, Logprob]] | None = None if params.logprobs is None else []
        finish, reason = None, None
        while finish is None:
            logits = self.network(input_ids=torch.tensor([prompt + ids])).logits[0, -1].float()  # (V,)
            raw = torch.log_softmax(logits, dim=-1)
            token = self._sample(logits, params, generator)
            ids.append(token)
            if logprobs is not None:
                logprobs.append(self._position(raw, token, params.logprobs))
            if len(ids) >= params.max_tokens or len(prompt) + len(ids) >= max_model_len:
                finish = "length"
            elif not params.ignore_eos and token == self.hf_tokenizer.eos_token_id:
                finish = "stop"
            elif token in stop_ids:
                finish, reason = "stop", token
        text = (
            self.hf_tokenizer.decode(ids, skip_special_tokens=params.skip_special_tokens)
            if params.detokenize
            else ""
        )
        cumulative = (
            None if logprobs is None else sum(p[t].logprob for p, t in zip(logprobs, ids, strict=True))
        )
        return CompletionOutput(0, text, ids, cumulative, logprobs, finish, reason)

    @staticmethod
    def _sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
        if params.temperature < 1e-5:
            return int(logits.argmax())
        probs = torch.softmax(logits / params.temperature, dim=-1)
        ordered, order = probs.sort(descending=True)
        keep = ordered.cumsum(-1) - ordered < params.top_p  # the nucleus
        kept = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        return int(torch.multinomial(kept / kept.sum(), 1, generator=generator))

    def _position(self, raw: torch.Tensor, token: int, k: int) -> dict[int, Logprob]:
        """The sampled token and the top k (ranks from 1), as vLLM's logprobs processor
        merges them."""
        decode = self.hf_tokenizer.decode
        entry = {token: Logprob(float(raw[token]), int((raw > raw[token]).sum()) + 1, decode([token]))}
        if k > 0:
            values, indices = raw.topk(k)
            for rank, (value, index) in enumerate(zip(values.tolist(), indices.tolist(), strict=True), 1):
                entry.setdefault(index, Logprob(value, rank, decode([index])))
        return entry


class EngineModel:
    """The model inside the engine (`llm_engine.model_executor.driver_worker.model_runner.model`
    of an in-process engine), with vLLM's `load_weights`: checkpoint names and tensors in,
    each copied into its parameter (cast to its dtype; a shape mismatch is an assertion
    error, an unknown name a KeyError); a tied lm_head.weight is skipped; the names loaded
    come back as a set."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network
        self.loads: list[set[str]] = []

    def named_parameters(self) -> Any:
        return self.network.named_parameters()

    def named_modules(self) -> Any:
        return self.network.named_modules()

    def load_weights(self, weights: Any) -> set[str]:
        params = dict(self.network.named_parameters())
        tied = getattr(self.network.config, "tie_word_embeddings", False)
        loaded = set()
        for name, tensor in weights:
            if tied and name == "lm_head.weight":
                continue
            param = params[name]
            assert param.size() == tensor.size(), f"{name}: {param.size()} vs {tensor.size()}"
            param.data.copy_(tensor)
            loaded.add(name)
        self.loads.append(loaded)
        return loaded


def fake_vllm_module() -> types.ModuleType:
    """A module named `vllm` with this stand-in's LLM and SamplingParams (and a spec, so that
    importlib.util.find_spec("vllm") finds it once it is in sys.modules)."""
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.__version__ = VERSION
    module.LLM, module.SamplingParams = LLM, SamplingParams
    module.RequestOutput, module.CompletionOutput, module.Logprob = RequestOutput, CompletionOutput, Logprob
    return module
