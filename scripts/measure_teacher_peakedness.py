"""How peaked the demo teacher is: on its own text (the captured top-32 store) at T = 1, 2, 4,
and on the student's own samples (what on-policy distillation shows it), at T = 1.

    PYTHONPATH=src python scripts/measure_teacher_peakedness.py runs/demo   # after `distil run`
"""

import sys
from pathlib import Path

import numpy as np
import torch

from distil.batching import collate
from distil.data import encode_pairs
from distil.loading import load_models, load_splits
from distil.recipe import load_recipe
from distil.recipe.onpolicy import OnPolicySection
from distil.signals import SignalStore
from distil.train.onpolicy import sample_responses

run = Path(sys.argv[1])


def describe(name, logp):  # logp: (N, k) log-probabilities at T = 1
    for t in (1.0, 2.0, 4.0):
        z = logp / t
        z = z - np.logaddexp.reduce(z, axis=1, keepdims=True)  # renormalised over the top k
        p = np.exp(z)
        top1 = p.max(axis=1)
        ent = -(p * z).sum(axis=1)
        print(
            f"{name} T={t}: tokens {len(p)}, top-1 mean {top1.mean():.4f}, median "
            f"{np.median(top1):.4f}, >0.99 {(top1 > 0.99).mean():.1%}, <0.9 {(top1 < 0.9).mean():.1%}, "
            f"entropy {ent.mean():.3f} nats"
        )


with SignalStore(run / "signals") as store:
    logp = np.concatenate([s.logprobs for s in store]).astype(np.float64)
describe("teacher on its own text (store, top-32)", logp)

recipe = load_recipe("recipes/demo.yaml", [f"output_dir={run}"])
teacher, student, vocab = load_models(recipe, torch.device("cpu"), student_source=str(run / "student"))
train_pairs, _ = load_splits(recipe.data, recipe.seed)
examples = encode_pairs(student.tokenizer, train_pairs[:512], recipe.data.template, recipe.data.max_length)
torch.manual_seed(0)
for temperature in (1.0, 0.0):
    sampled = []
    for i in range(0, len(examples), 64):
        sampled += sample_responses(
            student.model,
            examples[i : i + 64],
            OnPolicySection(lmbda=1, temperature=temperature, max_new_tokens=12),
            student.tokenizer.eos_token_id,
            student.tokenizer.pad_token_id,
            recipe.data.max_length,
            seed=i,
        )
    batch = collate(sampled, student.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = teacher.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = batch["labels"][:, 1:] != -100
    lp = torch.log_softmax(logits[:, :-1][mask].double(), -1)
    top = lp.topk(32, dim=-1).values.numpy()
    describe(f"teacher on the trained student's samples (T_sample={temperature}, 512 prompts)", top)
    sampled_tokens = batch["labels"][:, 1:][mask]
    disagree = (lp.argmax(-1) != sampled_tokens).double().mean().item()
    print(f"  teacher's top-1 differs from the student's sampled token at {disagree:.1%} of positions")
