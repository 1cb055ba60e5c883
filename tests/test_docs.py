"""The documentation an operator follows: every link and every cited page resolves, the layout is complete."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A page named in prose or a comment: docs/sidecar.md, bench/results.md, README.md...
CITED = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b")
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".conf", ".sh", ".toml", ".cfg", ".ini", ".service"}


def tracked(*suffixes: str) -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in names.splitlines() if Path(name).suffix in suffixes and (ROOT / name).is_file()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


def resolve(cited: str, source: Path) -> Path | None:
    for base in (source.parent, ROOT, ROOT / "docs"):
        if (base / cited).exists():
            return base / cited
    return None


@pytest.mark.parametrize("page", tracked(".md"), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path) if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_every_page_cited_by_name_exists() -> None:
    missing = []
    for source in tracked(*TEXT_SUFFIXES):
        for cited in CITED.findall(source.read_text(encoding="utf-8", errors="replace")):
            if resolve(cited, source) is None:
                missing.append(f"{source.relative_to(ROOT)}: {cited}")
    assert not missing, "cited pages that do not exist:\n" + "\n".join(missing)


def test_the_readme_layout_names_every_top_level_folder() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1]
    folders = {path.relative_to(ROOT).parts[0] for path in tracked(*TEXT_SUFFIXES, ".json", ".ndjson", "")}
    folders = {name for name in folders if (ROOT / name).is_dir() and not name.startswith(".")}
    missing = sorted(name for name in folders if f"{name}/" not in layout)
    assert not missing, f"README layout omits {missing}"
