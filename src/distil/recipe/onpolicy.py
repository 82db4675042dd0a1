"""Recipe section `distill.on_policy:`: the student's own samples, scored by the teacher.

    distill:
      on_policy: {lmbda: 0.5, temperature: 1.0, max_new_tokens: 16}

With probability `lmbda` per micro-batch (GKD's mixing, Agarwal et al. 2024) the student
generates the responses to the micro-batch's prompts, the teacher scores them token by
token, and the divergence trains the student on those tokens; otherwise the micro-batch
trains off-policy as usual (on the dataset's responses, from the live teacher or the store).
The teacher is a live local one (full logits), or one behind `teacher.api` that can score
(echo + top-k logprobs; its top-k then train the student by the sparse losses).
"""

from typing import Annotated, Literal

from pydantic import Field

from distil.recipe.section import Probability, Section


class OnPolicySection(Section):
    """On-policy distillation (GKD). Needs distill.kd_weight > 0 and a teacher that scores: a
    live local teacher (loaded even when off-policy micro-batches train from a signal store),
    or one behind teacher.api (its off-policy micro-batches train from the store)."""

    lmbda: Probability = 0.0
    """Probability that a micro-batch is on-policy (TRL's `lmbda`); 0 is off-policy only,
    1 on-policy only. The draw is a pure function of (seed, micro-batch number)."""
    temperature: Annotated[float, Field(ge=0)] = 1.0
    """Sampling temperature of the student's responses; 0 is greedy."""
    max_new_tokens: Annotated[int, Field(ge=1)] = 64
    """Longest generated response, in tokens (also cut to data.max_length with its prompt)."""
    top_k: Annotated[int, Field(ge=1)] = 20
    """Top logprobs asked of a teacher behind teacher.api for each token of a sample (at most
    what it offers: 20 for OpenAI's API). A live teacher gives its full distribution."""
    generator: Literal["hf", "vllm"] = "hf"
    """Engine that samples the student's responses: `hf` (transformers' generate) or `vllm`
    (TRL's use_vllm, colocate mode: an engine in each training process, on its GPU, that
    takes the student's weights after every optimizer step; distil.train.vllm_sampler).
    `vllm` needs the vllm package and a CUDA GPU, and a student that is not sharded (DDP or
    ZeRO-2, not FSDP or ZeRO-3); it is refused in one line otherwise."""
    vllm_gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.3
    """Share of the GPU's memory the vLLM engine may take for its weights and KV cache, next
    to training (vLLM's gpu_memory_utilization; TRL's vllm_gpu_memory_utilization)."""
