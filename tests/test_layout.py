"""The README's layout names every top-level folder, so a newcomer finds each one described."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ignored(name: str) -> bool:
    """Whether .gitignore keeps a top-level folder out of the repository (a venv, caches, var/)."""
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return name == ".git" or any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def test_the_readme_layout_shows_every_top_level_folder() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    named = set(re.findall(r"(?:^|\s)(\.?[\w-]+)/", layout))
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not ignored(p.name)}
    assert folders - named == set(), "folders missing from the README layout"
