"""The README opens with the two set-up commands, and CI runs the second one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    block = ROOT.joinpath("README.md").read_text().split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_the_default_job_and_the_test_command():
    default_job, tests = setup_commands()
    assert "pip install torch==2.13.0" in default_job and default_job.endswith("distil run")
    ci = ROOT.joinpath(".ci/run").read_text().strip().splitlines()[-1]
    assert ci == tests
    assert tests.index(".venv/bin/ruff check &&") < tests.index("-m pytest")  # lint, then test
    assert tests.index(".venv/bin/ruff format --check &&") < tests.index("-m pytest")  # formatting too


def test_recipes_and_docs_the_readme_names_exist():
    text = ROOT.joinpath("README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).exists(), link
    for recipe in re.findall(r"`([\w-]+\.yaml)`", text):
        assert (ROOT / "recipes" / recipe).is_file(), recipe
