"""The student's on-policy samples drawn by vLLM (`distill.on_policy.generator: vllm`; TRL's
`use_vllm` in its colocate mode).

    sampler = VllmSampler(tokenizer, config, max_length, mixed_precision, weights_version)
    examples = sampler.sample(student, rows, seed)   # opens the engine, syncs, generates

Each training process holds its own engine on its own GPU, as TRL's colocate mode does: the
engine runs inside the process (vLLM's `external_launcher` executor), so its model is a
Python object whose `load_weights` takes the student's tensors straight from GPU memory.
The engine starts on the first on-policy micro-batch from a folder holding only the
student's config and tokenizer, with dummy weights (vLLM's `load_format="dummy"`: nothing
of the student is written to disk), and every weight is pushed into it at once; that first
push must fill every parameter vLLM's own loader would require from a checkpoint, or the
run stops. From then on the
weights are pushed again whenever the optimizer has stepped since the last push
(`weights_version`, the trainer's step count), and vLLM's prefix cache is reset. A LoRA
student is pushed with its adapters merged into the weights (the base weight plus the
adapter's delta; the training copy is not touched).

The samples are those of `distil.train.onpolicy.sample_responses`: the student's own
distribution at the section's temperature (greedy at 0), no top-k or top-p cut, nothing of
its generation_config, ending at the tokenizer's eos (kept) or max_new_tokens, cut to
data.max_length with the prompt. Each row draws under its own seed (the micro-batch's seed
plus the row), so a resumed run asks the same requests; bit-equal samples then depend on
vLLM's kernels. The engine computes in the training's precision: bf16 or fp16 under mixed
precision, else the student's own dtype.

Tested on CPU against a stand-in of vLLM's API (tests/teachers/fake_vllm.py); the names used
here were read in vLLM 0.34.0's sources (LLM's arguments, the in-process model path,
`load_weights` returning the names loaded, `reset_prefix_cache`). Not yet run with real vLLM
on a GPU.
"""

import importlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from distil.data import Example
from distil.generators import GeneratorError
from distil.losses import IGNORE_INDEX
from distil.recipe import Recipe
from distil.recipe.onpolicy import OnPolicySection
from distil.train.adapters import ADAPTER
from distil.train.onpolicy import prompt_ids

ENGINE_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
"""The engine's dtype under accelerate's mixed precision; otherwise the student's own."""


class VllmSampler:
    """One vLLM engine on the student's weights in this process; see the module docstring."""

    def __init__(
        self,
        tokenizer: Any,
        config: OnPolicySection,
        max_length: int,
        mixed_precision: str,
        weights_version: Callable[[], int],
    ) -> None:
        self.tokenizer, self.config, self.max_length = tokenizer, config, max_length
        self.mixed_precision, self.weights_version = mixed_precision, weights_version
        self.vllm: Any = None
        self.engine: Any = None
        self.synced: int | None = None
        """The weights version the engine holds (None before the first push)."""
        self.pushes = 0
        """How many times the weights were pushed into the engine."""
        self._folder: tempfile.TemporaryDirectory | None = None

    def sample(self, model: Any, examples: list[Example], seed: int) -> list[Example]:
        """The examples' prompts with the student's sampled responses, labelled like dataset
        responses; row r draws under seed + r."""
        if self.engine is None:
            self._open(model)
        if self.synced != self.weights_version():
            self._push(model)
        prompts = [prompt_ids(e) for e in examples]
        rooms = [self.max_length - len(p) for p in prompts]
        asked = [row for row, room in enumerate(rooms) if room > 0]  # a full prompt has no room
        outputs = self.engine.generate(
            [{"prompt_token_ids": prompts[row]} for row in asked],
            [self._params(min(self.config.max_new_tokens, rooms[row]), seed + row) for row in asked],
            use_tqdm=False,
        )
        responses = [[] for _ in examples]
        for row, output in zip(asked, outputs, strict=True):
            responses[row] = list(output.outputs[0].token_ids)[: rooms[row]]
        return [
            Example(e.sample_id, p + r, [IGNORE_INDEX] * len(p) + r)
            for e, p, r in zip(examples, prompts, responses, strict=True)
        ]

    def close(self) -> None:
        """Drop the engine (its GPU memory goes back) and its config folder."""
        self.engine = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _params(self, max_tokens: int, seed: int) -> Any:
        """vLLM's SamplingParams of one row: the section's temperature over the whole
        distribution, the tokenizer's eos the only stop token (kept in the output)."""
        eos = self.tokenizer.eos_token_id
        return self.vllm.SamplingParams(
            n=1,
            temperature=self.config.temperature,
            top_p=1.0,
            seed=seed % 2**63,
            max_tokens=max_tokens,
            ignore_eos=True,  # no eos ids from a generation config; stop_token_ids puts this one back
            stop_token_ids=[] if eos is None else [eos],
            detokenize=False,
        )

    def _open(self, model: Any) -> None:
        """Start the engine on dummy weights from a folder of the student's config and
        tokenizer (in the system's temporary folder, removed at close)."""
        self.vllm = importlib.import_module("vllm")
        launcher_environment()
        self._folder = tempfile.TemporaryDirectory(prefix="distil-vllm-")
        folder = Path(self._folder.name)
        model.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.engine = self.vllm.LLM(
            model=str(folder),
            tokenizer=str(folder),
            dtype=ENGINE_DTYPES.get(self.mixed_precision, str(model.dtype).removeprefix("torch.")),
            seed=0,  # every request carries its own seed
            load_format="dummy",  # the weights come from the student by load_weights
            generation_config="vllm",  # no sampling defaults from a generation_config
            distributed_executor_backend="external_launcher",  # in process, as TRL's colocate
            gpu_memory_utilization=self.config.vllm_gpu_memory_utilization,
            max_model_len=self.max_length,
            enable_prefix_caching=True,
        )

    def _push(self, model: Any) -> None:
        """Load the student's current weights into the engine; the first push must cover
        every parameter of the engine's model."""
        target = engine_network(self.engine, self.vllm)
        loaded = target.load_weights(engine_weights(model))
        if self.synced is None and isinstance(loaded, set):
            expected = {name for name, _ in target.named_parameters()} - exempt_parameters(target)
            missing = sorted(expected - loaded)
            if missing:
                raise GeneratorError(
                    f"the student's weights did not fill vLLM's model of it ({len(missing)} "
                    f"parameters left at their dummy values, first {missing[0]!r}); set "
                    "distill.on_policy.generator=hf"
                )
        self.engine.reset_prefix_cache()  # cached keys and values came from the old weights
        self.synced = self.weights_version()
        self.pushes += 1


def exempt_parameters(network: Any) -> set[str]:
    """Parameters vLLM's own loader does not require from a checkpoint (its
    `track_weights_loading`): those of a module whose quantization method quantizes online or
    post-processes the loaded weights (in an unquantized model, its linear and embedding
    layers); the rest, norms included, must come from the student."""
    exempt = set()
    for name, module in network.named_modules():
        method = getattr(module, "quant_method", None)
        if method is not None and (
            getattr(method, "uses_meta_device", False) or hasattr(method, "process_weights_after_loading")
        ):
            exempt.update(f"{name}.{p}" if name else p for p, _ in module.named_parameters())
    return exempt


def engine_network(engine: Any, vllm: Any) -> Any:
    """The model object inside an in-process vLLM engine (the path TRL's colocate mode
    uses); a clear error where this vLLM version keeps it elsewhere."""
    try:
        return engine.llm_engine.model_executor.driver_worker.model_runner.model
    except AttributeError:
        version = getattr(vllm, "__version__", "unknown")
        raise GeneratorError(
            f"vLLM {version} does not expose its model in process "
            "(llm_engine.model_executor.driver_worker.model_runner.model), so the student's "
            "weights cannot be pushed into it; set distill.on_policy.generator=hf"
        ) from None


@torch.no_grad()
def engine_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every weight of `model` as its Hugging Face checkpoint names it,
    LoRA adapters merged in: a LoRA layer's base weight plus the adapter's delta, the
    adapter's own tensors left out. Tied weights come once."""
    lora = dict(_lora_layers(model))
    for name, parameter in model.named_parameters():
        owner = _lora_owner(name, lora)
        if owner is None:
            yield name, parameter.detach()
        elif name.startswith(f"{owner}.base_layer."):
            leaf = name.removeprefix(f"{owner}.base_layer.")
            value = parameter.detach()
            if leaf == "weight":
                value = value + lora[owner].get_delta_weight(ADAPTER).to(value.dtype)
            yield f"{owner}.{leaf}", value


def _lora_owner(name: str, lora: dict[str, Any]) -> str | None:
    """The LoRA layer a parameter `name` sits in, or None."""
    parts = name.split(".")
    return next(
        (".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in lora), None
    )


def _lora_layers(model: Any) -> list[tuple[str, Any]]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def launcher_environment() -> None:
    """What vLLM's external_launcher reads to join (or start) torch.distributed: the
    process's rank and world as accelerate set them, and a rendezvous address for a single
    process started without a launcher."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])


def on_policy_sampler(
    recipe: Recipe, tokenizer: Any, mixed_precision: str, steps: Callable[[], int]
) -> VllmSampler | None:
    """The vLLM sampler of `distill.on_policy.generator: vllm` (None for `hf`); `steps`: the
    trainer's optimizer steps so far, the version of the student's weights."""
    config = recipe.distill.on_policy
    if config.generator != "vllm":
        return None
    return VllmSampler(tokenizer, config, recipe.data.max_length, mixed_precision, steps)
