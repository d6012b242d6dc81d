"""The documentation holds together: the README stays a front door, every relative link and
image in the README and docs/ resolves (a heading's anchor too), every file in docs/ is
referenced, every result in bench/results is cited by a page and every cited result is there,
and the site builds with `mkdocs build --strict` where MkDocs is installed."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

DOCS = ROOT / "docs"
RESULTS = ROOT / "bench" / "results"
README_MAX_LINES = 300
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A result file as the pages cite it: a dated name, optionally with its folder.
RESULT = re.compile(r"`(?:bench/results/)?([a-z0-9-]+-\d{4}-\d\d-\d\d[a-z0-9-]*\.(?:json|txt))`")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def prose(path: Path) -> str:
    """The page without its fenced code blocks and code spans (a link there is not a link)."""
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text())
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub writes it (MkDocs agrees for headings without runs of
    punctuation between words): lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"(?m)^#{1,6} (.+)$", text)}


def links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path)) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_and_image_resolves():
    broken = []
    for page in pages():
        for target in links(page):
            file, _, anchor = target.partition("#")
            destination = (page.parent / file).resolve() if file else page
            if not destination.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_every_file_in_docs_is_referenced():
    referenced = {(page.parent / target.partition("#")[0]).resolve()
                  for page in pages() for target in links(page) if target.partition("#")[0]}
    files = {path.resolve() for path in DOCS.rglob("*") if path.is_file()}
    unreferenced = sorted(str(path.relative_to(ROOT)) for path in files - referenced)
    assert unreferenced == [], "files in docs/ that no page or the README links to"


def test_every_result_is_cited_and_every_cited_result_is_kept():
    text = "\n".join(page.read_text() for page in pages())
    cited = set(RESULT.findall(text))
    kept = {path.name for path in RESULTS.iterdir() if path.suffix != ".md"}
    assert cited - kept == set(), "pages cite results that bench/results does not hold"
    assert kept - cited == set(), "results no page cites: remove them (git history keeps them)"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="MkDocs is not installed")
def test_the_site_builds_strict(tmp_path):
    """Every page in the navigation, every link and anchor as MkDocs resolves them."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").is_file() and (tmp_path / "images" / "page-detect.png").is_file()
