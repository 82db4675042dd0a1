"""Every shipped recipe runs end to end from a fresh checkout, with the commands its comments
write; and every command written in a recipe's comments or in a shell block of the docs
(README.md, docs/*.md) runs in a test or is allowed not to, for a reason given here.

A fresh checkout is a folder holding only the repository's `src`, `scripts` and `recipes`
(no `runs/`): each scenario runs its recipe's commands there, in order and as written, with
overrides (or script options) appended that shrink prompts and steps. `distil` commands run
in this process (`distil serve` as a child, on a free port), scripts through `runpy`. The
demo-based scenarios load the shipped teacher and are marked slow; tests/test_demo.py runs
recipes/demo.yaml itself.
"""

import os
import re
import runpy
import secrets
import shlex
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_docs_examples import ALL_BLOCKS, SHELL

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "recipes").glob("*.yaml"))
PROGRAMS = {"distil", "python", "python3", "pip", "accelerate", "export", "nice"}


@dataclass(frozen=True)
class Step:
    """A command as the recipe's comments or the docs write it, and what shrinks it."""

    command: str
    shrink: tuple[str, ...] = ()


TINY = ("train.max_steps=2", "train.save_every=2", "train.log_every=1", "eval.max_samples=8")
DEMO = (
    "synth.prompts.per_task=1",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.save_every=2",
    "train.log_every=1",
    "eval.per_task=1",
    "eval.batch_size=8",
)
EXPORT_BENCH = (
    "export.prompts_per_task=1",
    "export.compared_prompts=2",
    "bench.new_tokens=2",
    "bench.batch_sizes=[1]",
    "bench.repeats=1",
    "bench.warmup=0",
)
SMOLLM2_WM = (
    "student.layers=[0,29]",
    "synth.prompts.per_task=1",
    "synth.sampling.max_new_tokens=4",
    "synth.filters.drop_truncated=false",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.save_every=2",
    "train.log_every=1",
    "eval.per_task=1",
    "eval.max_new_tokens=4",
)
"""recipes/smollm2-watermarked.yaml shrunk."""
BETWEEN = ("--steps", "1", "--batch-size", "4", "--eval-per-task", "1")
SMOLLM2_DATA = (
    "synth.prompts.file=",
    "synth.prompts.per_task=1",
    "synth.prompts.expand=1",
    "synth.sampling.max_new_tokens=6",
    "student.layers=[0,29]",
)
SMOLLM2 = (
    *SMOLLM2_DATA,
    "train.max_steps=2",
    "train.batch_size=4",
    "train.save_every=2",
    "train.log_every=1",
    "eval.per_task=1",
    "eval.max_new_tokens=4",
    "eval.sample_answers=2",
    *EXPORT_BENCH,
    "export.gguf=[q8_0]",
    "export.allow_parity_failure=true",
)
"""The real teacher's recipes shrunk: the task prompts alone (one a family), a 2-layer student.
Parity on two prompts is not what this checks (tests/models/test_smollm2.py checks int8 on
the real vocabulary); a variant that fails it is set aside and the run goes on either way."""

SCENARIOS: dict[str, list[Step]] = {
    "recipes/tiny.yaml": [Step("distil run recipes/tiny.yaml", TINY)],
    "recipes/tiny-signals.yaml": [
        Step("distil capture recipes/tiny-signals.yaml", TINY),
        Step("distil train recipes/tiny-signals.yaml", TINY),
        Step("distil eval recipes/tiny-signals.yaml", TINY),
    ],
    "recipes/synth-tiny.yaml": [
        Step("distil run recipes/synth-tiny.yaml", ("synth.prompts.per_task=1", *TINY))
    ],
    "recipes/api-teacher.yaml": [
        Step("distil serve tiny-teacher --port 8000"),
        Step("distil synth recipes/api-teacher.yaml --dry-run"),
        Step("distil synth recipes/api-teacher.yaml", ("synth.prompts.per_task=1", "synth.prompts.expand=1")),
        Step(
            "distil run recipes/api-teacher.yaml",
            ("synth.prompts.per_task=1", "synth.prompts.expand=1", *TINY),
        ),
    ],
    "recipes/demo-cross-tokenizer.yaml": [
        Step("PYTHONPATH=src python scripts/build_demo_bpe_student.py --out runs/demo-bpe-student"),
        Step("distil run recipes/demo-cross-tokenizer.yaml", DEMO),
        Step(
            "distil run recipes/demo-cross-tokenizer.yaml cross_tokenizer.method=uld --out runs/xtok-uld",
            DEMO,
        ),
    ],
    "recipes/demo-between.yaml": [
        Step(
            "PYTHONPATH=src python scripts/build_demo_teacher.py --out runs/teacher-between "
            "--init demo --extra-tasks between --extra-weight 2 --steps 600 --learning-rate 5e-4",
            BETWEEN,
        ),
        Step(
            "distil run recipes/demo-between.yaml --compare",
            (*DEMO, *EXPORT_BENCH, "comparison.seeds=1", "comparison.fractions=[]"),
        ),
    ],
    "recipes/demo-watermarked.yaml": [
        Step("export DISTIL_WATERMARK_KEY=..."),
        Step("distil serve demo --port 18437 --watermark --max-top-logprobs 32"),
        Step("distil run recipes/demo-watermarked.yaml", DEMO),
        Step(
            "distil audit model runs/demo-watermarked/student --tasks 100",
            ("--tasks", "1", "--null-keys", "2"),
        ),
    ],
    "recipes/smollm2-watermarked.yaml": [
        Step("export DISTIL_WATERMARK_KEY=..."),
        Step("distil serve smollm2-135m-instruct --port 18438 --watermark --max-top-logprobs 32"),
        Step("distil run recipes/smollm2-watermarked.yaml", SMOLLM2_WM),
        Step(
            "python scripts/watermark_cost.py corpus heldout.jsonl --per-task 20 --max-new-tokens 24",
            ("--per-task", "1", "--max-new-tokens", "4"),
        ),
        Step(
            "distil audit model runs/smollm2-watermarked/student --corpus heldout.jsonl --top-k 4",
            ("--null-keys", "2"),
        ),
        Step("distil serve smollm2-135m-instruct --port 18439 --max-top-logprobs 32"),
        Step(
            "distil run recipes/smollm2-watermarked.yaml teacher.api.base_url=http://127.0.0.1:18439/v1 "
            "--out runs/smollm2-control",
            SMOLLM2_WM,
        ),
        Step(
            "distil audit model runs/smollm2-control/student --corpus heldout.jsonl --top-k 4 --out "
            "audit-control",
            ("--null-keys", "2"),
        ),
    ],
    "recipes/smollm2.yaml": [Step("distil run recipes/smollm2.yaml", SMOLLM2)],
    "recipes/smollm2-compare.yaml": [
        Step("distil run recipes/smollm2.yaml", SMOLLM2),
        Step(
            "distil run recipes/smollm2-compare.yaml --compare",
            (
                "student.layers=[0,29]",
                "train.max_steps=2",
                "train.batch_size=4",
                "train.save_every=2",
                "train.log_every=1",
                "eval.per_task=1",
                "eval.max_new_tokens=4",
                "comparison.seeds=2",
            ),
        ),
    ],
}
"""Each shipped recipe (but recipes/demo.yaml: tests/test_demo.py) and the commands that
run it, in order."""

SLOW = {
    "recipes/demo-cross-tokenizer.yaml",
    "recipes/demo-between.yaml",
    "recipes/demo-watermarked.yaml",
    "recipes/smollm2.yaml",
    "recipes/smollm2-compare.yaml",
    "recipes/smollm2-watermarked.yaml",
}
PACKAGED = {"recipes/smollm2.yaml", "recipes/smollm2-compare.yaml", "recipes/smollm2-watermarked.yaml"}
"""Scenarios of the packaged SmolLM2: the smollm2_gguf fixture puts it in the test cache."""

# fmt: off
ALLOWED: dict[str, str] = {
    r"^README\.md:\d+: python3 -m venv \.venv && ":
        "installs from scratch (a new virtual environment, torch downloaded): .ci/run runs "
        "the test one in CI; the other ends in the default job, `distil run`",
    r"^docs/[\w-]+\.md:\d+: pip install '(distil|\.)\[[a-z,]+\]'$":
        "installs an extra (a download); the suite runs with every extra installed",
    r"^(recipes/smollm2\.yaml|docs/real-teacher\.md:\d+|README\.md:\d+): pip install -e "
    r"'\.\[synth,gguf,export\]'( && distil run recipes/smollm2\.yaml)?$":
        "installs extras (a download); the suite runs with every extra installed, and the "
        "smollm2 scenario runs `distil run recipes/smollm2.yaml`",
    r"^recipes/demo\.yaml: distil run$":
        "the default job takes no overrides to shrink it; tests/test_demo.py runs the recipe "
        "it runs, recipes/demo.yaml, shrunk",
    r"^recipes/demo\.yaml: distil run --compare$":
        "18 trainings of the demo (about 2 hours on 2 cores); the same stage runs shrunk here "
        "on recipes/demo-between.yaml, and in tests/test_compare.py",
    r"^docs/demo-teacher\.md:\d+: PYTHONPATH=src python scripts/build_demo_teacher\.py --out "
    r"src/distil/assets/demo-teacher$":
        "rebuilds the shipped teacher over the one in the repository (3,000 steps, about 40 "
        "minutes); tests/tasks/test_demo_teacher.py runs the script at tiny settings",
    r"^docs/export\.md:\d+: (pip install -e '\.\[export\]'|distil (export|bench) runs/demo)$":
        "the export extra and the default job's export and bench stages: tests/test_demo.py "
        "runs both stages on the shrunken demo, tests/export/test_cli_export.py both commands",
    r"^docs/export\.md:\d+: (CMAKE_BUILD_PARALLEL_LEVEL=1 .*pip wheel|pip install WHEELS/)":
        "builds llama.cpp from source (about 45 minutes on 2 cores, a C++ compiler)",
    r"^docs/export\.md:\d+: python -m pytest tests/export/test_gguf\.py -q$":
        "a test file of the suite, run with it (its llama.cpp tests skip without llama.cpp)",
    r"^docs/export\.md:\d+: distil run recipes/demo\.yaml \"export\.gguf=\[f16,q8_0,q4_k_m\]\"$":
        "needs llama.cpp, which quantises q4_k_m",
    r"^docs/provenance\.md:\d+: (export DISTIL_WATERMARK_KEY=|distil (serve|audit|run|synth|"
    r"capture|train) |python scripts/(provenance_measure|mix_signal_stores|watermark_cost)\.py )":
        "the measurements of docs/provenance.md: full-size watermarked runs (hours of training "
        "each), their mixes, and null distributions over 10,000 keys; serve --watermark, audit "
        "model and the watermarked recipe run here shrunk (recipes/demo-watermarked.yaml), the "
        "rest in tests/server and tests/audit",
    r"^docs/real-teacher\.md:\d+: distil run recipes/smollm2-compare\.yaml --compare "
    r"--out runs/smollm2-compare-300 train\.max_steps=300 train\.save_every=300 "
    r"\"comparison\.methods=\[seq_kd,logit_kd(,on_policy)?\]\"$":
        "the 300-step comparisons (six trainings, about 50 minutes of an idle 2-core CPU; three "
        "on-policy ones, about 45 more); the smollm2-compare scenario runs the same recipe's "
        "--compare shrunk, train.max_steps overridden; tests/test_compare.py builds the on_policy "
        "method's recipe and tests/signals/test_train_from_signals.py trains on-policy beside a store",
    r"^docs/real-teacher\.md:\d+: PYTHONPATH=src python scripts/compare_margins\.py "
    r"runs/smollm2-compare-300 on_policy logit_kd$":
        "reads the 300-step comparison's folder; tests/test_compare_margins.py runs the script "
        "on a small compare folder and checks it by hand",
    r"^docs/training\.md:\d+: distil (train|run) RECIPE --resume( runs/NAME/checkpoints/step-\d+)?$":
        "RECIPE and NAME stand for the reader's run; tests/test_train_resume.py runs both "
        "commands on a chosen checkpoint and the bare --resume",
    r"^docs/scale\.md:\d+: distil (train|run) RECIPE --num-processes \d":
        "RECIPE stands for any recipe; two processes on CPU run in tests/test_multiprocess.py, "
        "eight and FSDP need 8 GPUs",
    r"^docs/scale\.md:\d+: accelerate launch .*--num_machines 2 ":
        "two machines with 8 GPUs each",
    r"^docs/serve\.md:\d+: (pip install -e '\.\[serve\]'|distil serve demo)$":
        "the serve extra, and a server that runs until stopped: tests/server/test_command.py "
        "runs `distil serve` on a free port, the demo-watermarked scenario `distil serve demo`",
    r"^docs/serve\.md:\d+: DISTIL_SERVE_API_KEY=s3cret distil serve \./my-teacher ":
        "./my-teacher stands for the reader's model; a key and a non-loopback host are tested "
        "in tests/server/test_command.py",
    r"^docs/serve\.md:\d+: python -m distil\.server\.faults ":
        "a fault proxy in front of a running server; tests/server/test_faults.py runs it",
}
"""Commands written in the docs that no test here runs: a pattern each, and why."""
# fmt: on


def _commands(text: str) -> list[str]:
    """The command lines of shell text: continuations joined, comments and a trailing `&` cut,
    only lines that start (after VAR=value words) with a program the docs run."""
    found = []
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = re.split(r"\s#\s|^\s*#", line, maxsplit=1)[0].strip().rstrip("&").strip()
        line = re.sub(r"\s+", " ", line)
        words = line.split()
        programs = [w for w in words if not re.match(r"^[A-Z_]+=", w)][:1]
        if programs and (programs[0] in PROGRAMS or programs[0].startswith(".venv/")):
            found.append(line)
    return found


def written_commands() -> list[tuple[str, str]]:
    """(where, command) for every command in the recipes' comments and the docs' shell blocks."""
    found = [(f"{b.doc}:{b.line}", c) for b in ALL_BLOCKS if b.language in SHELL for c in _commands(b.code)]
    for recipe in RECIPES:
        comments = "\n".join(
            line[1:] for line in (ROOT / recipe).read_text().splitlines() if line.startswith("#")
        )
        found += [(recipe, command) for command in _commands(comments)]
    return found


def test_every_written_command_runs_here_or_is_allowed_with_a_reason():
    run = {step.command for steps in SCENARIOS.values() for step in steps}
    written = written_commands()
    assert len(written) > 50
    not_run = [f"{where}: {command}" for where, command in written if command not in run]
    unaccounted = [line for line in not_run if not any(re.search(p, line) for p in ALLOWED)]
    assert not unaccounted, "run these in a scenario, or allow them with a reason:\n" + "\n".join(unaccounted)
    stale = [p for p in ALLOWED if not any(re.search(p, line) for line in not_run)]
    assert not stale, f"allowed patterns that match no command left to allow: {stale}"


def test_every_shipped_recipe_has_a_scenario():
    assert sorted([*SCENARIOS, "recipes/demo.yaml"]) == RECIPES


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A fresh checkout: the repository's sources, scripts and recipes, and no runs/."""
    folder = tmp_path_factory.mktemp("checkout")
    for name in ("src", "scripts", "recipes"):
        (folder / name).symlink_to(ROOT / name)
    return folder


@pytest.mark.parametrize(
    "recipe", [pytest.param(r, marks=[pytest.mark.slow] if r in SLOW else []) for r in SCENARIOS]
)
def test_the_recipe_runs_end_to_end_from_a_fresh_checkout(recipe, checkout, monkeypatch, request):
    if recipe in PACKAGED:
        request.getfixturevalue("smollm2_gguf")
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with ExitStack() as servers:
        base_url: list[str] = []
        for step in SCENARIOS[recipe]:
            _run(step, monkeypatch, servers, base_url)
    name = recipe.removeprefix("recipes/").removesuffix(".yaml")
    assert (checkout / "runs" / name / "student" / "config.json").is_file()


def _run(step: Step, monkeypatch: pytest.MonkeyPatch, servers: ExitStack, base_url: list[str]) -> None:
    """Run one step as its command says: env words, then `distil`, `python SCRIPT` or `export`."""
    words = shlex.split(step.command)
    while re.match(r"^[A-Z_]+=", words[0]):
        key, value = words.pop(0).split("=", 1)
        monkeypatch.setenv(key, os.path.abspath(value) if key == "PYTHONPATH" else value)
    program, args = words[0], [*words[1:], *step.shrink]
    if program == "export":  # the docs' placeholder for a secret: a fresh one
        monkeypatch.setenv(args[0].split("=", 1)[0], secrets.token_hex(16))
    elif program == "python":
        _script(args, monkeypatch)
    elif args[0] == "serve":
        base_url.append(_serve(args[1:], servers))
    else:
        _distil(
            [
                *args,
                *(
                    f"teacher.api.base_url={url}"
                    for url in base_url[-1:]  # the latest
                    if args[0] != "audit"
                ),
            ],
            monkeypatch,
        )


def _distil(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from distil import cli

    monkeypatch.setattr(sys, "argv", ["distil", *args])
    try:
        cli.main()
    except SystemExit as exit_info:
        assert not exit_info.code, f"`distil {shlex.join(args)}` exited with {exit_info.code}"


def _script(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    script = Path(args[0]).resolve()
    monkeypatch.setattr(sys, "argv", [str(script), *args[1:]])
    monkeypatch.syspath_prepend(str(script.parent))  # scripts import one another
    runpy.run_path(str(script), run_name="__main__")


def _serve(args: list[str], servers: ExitStack) -> str:
    """`distil serve` as a child on a free port (the docs' fixed one may be taken); its /v1 URL."""
    from distil.server.testing import serve_process

    model, options = args[0], args[1:]
    at = options.index("--port")
    del options[at : at + 2]
    return servers.enter_context(serve_process(model, *options, timeout=300)).base_url
