"""The tree stays readable: no source file over 400 lines, and the README's Layout section
names every package, module and data folder of src/distil and every top-level folder of the
repository, and nothing that is not there, so a folder added or removed without the README
saying so fails here."""

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "distil"
MAX_LINES = 400
NOT_LISTED = {"__init__.py", "py.typed", "__pycache__"}


def long_files(folder: Path, limit: int = MAX_LINES) -> dict[str, int]:
    """Python files under `folder` longer than `limit` lines, with their length."""
    lengths = {
        p.relative_to(folder).as_posix(): len(p.read_text().splitlines()) for p in folder.rglob("*.py")
    }
    return {name: n for name, n in sorted(lengths.items()) if n > limit}


def layout_entries(readme: str) -> tuple[set[str], set[str]]:
    """(entries under src/distil/, top-level folders) of the Layout section's tree.

    A line at column 0 names top-level folders, one indented by two spaces names entries of
    src/distil/; the names are the line's first column (up to two spaces), comma-separated,
    and lines indented further continue a description."""
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1].split("\n", 1)[1]
    package, top = set(), set()
    for line in block.splitlines():
        entry = re.match(r"^( {0,2})(\S.*?)(?: {2,}|$)", line)
        if not entry or entry.group(2).startswith("---"):
            continue
        names = {name.strip().rstrip("/") for name in entry.group(2).split(",")}
        if entry.group(1):
            package |= names - {""}
        else:  # `src/distil/` names src
            top |= {name.split("/")[0] for name in names if name}
    return package, top


def package_entries(folder: Path = PACKAGE) -> set[str]:
    """The packages, modules and data folders of src/distil (caches and markers aside)."""
    return {
        p.name for p in folder.iterdir() if p.name not in NOT_LISTED and (p.is_dir() or p.suffix == ".py")
    }


def top_level_folders(root: Path = ROOT) -> set[str]:
    """Top-level folders a checkout holds: not hidden, not ignored by .gitignore."""
    ignored = [
        line.strip().strip("/")
        for line in (root / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and not any(fnmatch.fnmatch(p.name, pattern) for pattern in ignored)
    }


def test_no_source_file_is_over_the_limit():
    assert long_files(ROOT / "src") == {}, f"split these along their jobs (limit {MAX_LINES})"


def test_the_line_count_finds_a_long_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_LINES)
    assert long_files(tmp_path) == {"sub/long.py": MAX_LINES + 1}


def test_the_readme_layout_names_every_folder_and_module_and_nothing_else():
    package, top = layout_entries((ROOT / "README.md").read_text())
    want = package_entries()
    assert sorted(want - package) == [], "name these in README.md's Layout section"
    assert sorted(package - want) == [], "README.md's Layout names these, which are gone"
    assert sorted(top_level_folders() - top) == [], "name these top-level folders in the Layout"
    assert sorted(top - top_level_folders()) == [], "the Layout names these missing folders"


def test_the_layout_check_sees_an_added_and_a_removed_entry(tmp_path):
    readme = (
        "# x\n\n## Layout\n\n```\nsrc/distil/\n  cli.py            the command\n"
        "  train/, gone/     stages: training\n  --- shared ---\n"
        "                    a continued description, eval.py\n"
        "recipes/          shipped recipes\n```\n\n## Next\n"
    )
    package, top = layout_entries(readme)
    assert (package, top) == ({"cli.py", "train", "gone"}, {"src", "recipes"})
    (tmp_path / "cli.py").write_text("")
    (tmp_path / "train").mkdir()
    (tmp_path / "new_module.py").write_text("")
    assert package_entries(tmp_path) - package == {"new_module.py"}
    assert package - package_entries(tmp_path) == {"gone"}
