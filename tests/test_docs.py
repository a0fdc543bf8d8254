"""The documentation: the README stays short and its links resolve; the MkDocs site builds with --strict
(a broken link or anchor between pages fails the build)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _slug(heading: str) -> str:
    """The anchor GitHub and MkDocs' toc give a heading (lowercase, punctuation dropped, spaces to hyphens)."""
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", heading)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_readme_is_short_and_opens_with_the_question_and_the_answer():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    first = text.split("\n## ")[0]
    assert "fine-tuned language model" in first
    assert text.split("\n## ")[1].startswith("The answer so far")
    # the README's install-and-test command is the one CI runs
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q torch==2.13.0 && pip install -q -e ".[dev]" && python -m pytest' in ci
    assert 'pip install torch==2.13.0 && pip install -e ".[dev]" && python -m pytest' in text


def test_every_relative_link_of_the_readme_and_the_docs_resolves():
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f": {page.name}" in nav, page.name


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "study" / "index.html").exists()
