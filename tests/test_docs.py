"""README, docs/ and bench/RESULTS.md: every relative link, anchor, repository path and `python -m` module they name
exists, and README and docs/ keep their size: README at most 150 lines, RESULTS.md at most 300, no line of README or
docs/ longer than 119 characters."""
import re

import pytest

from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "RESULTS.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a path inside the repository's own folders, not part of a URL or a longer path; a path that runs into a
# placeholder or a glob (experiments/<recipe>.yaml, tests/test_<package>_<module>.py, sweeps/*.yaml) is no file name
PATH = re.compile(r"(?<![\w./-])((?:src|tools|bench|experiments|tests|docs|\.ci)/[\w./-]*+)(?![<{*])")
MODULE = re.compile(r"python -m ((?:src|tools|bench)(?:\.\w+)+)")


def page_id(page):
    return str(page.relative_to(ROOT))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_and_anchor_exists(page):
    missing = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            missing.append(f"{target} (no such heading)")
    assert not missing, missing


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_repository_path_and_module_named_exists(page):
    text = page.read_text()
    paths = {p.rstrip(".,:;") for p in PATH.findall(text)}
    modules = {m.replace(".", "/") for m in MODULE.findall(text)}
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    missing += sorted(m for m in modules if not (ROOT / f"{m}.py").is_file() and not (ROOT / m).is_dir())
    assert not missing, missing


def test_the_path_check_sees_what_it_should():
    text = "see `src/people.py`, experiments/<recipe>.yaml, https://x.org/src/a.py and tests/test_<p>_<m>.py."
    assert PATH.findall(text) == ["src/people.py"]
    assert slug("People, not photos") == "people-not-photos" and slug("`--crop` center") == "--crop-center"


def test_readme_and_docs_stay_short():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 150
    assert len((ROOT / "bench" / "RESULTS.md").read_text().splitlines()) <= 300
    long = [f"{page_id(p)}:{i}" for p in PAGES[:-1] for i, line in enumerate(p.read_text().splitlines(), 1)
            if len(line) > 119]
    assert not long, long
