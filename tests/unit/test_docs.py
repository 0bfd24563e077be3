"""The README and docs/ hold together: links resolve inside the repository, the layout is true.

A newcomer follows the README's links first; a link to a file outside the repository (the
contract once lived in ``../shared/spec``) or to a heading renamed since is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "healthinfo"
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, …


def prose_lines(path: Path) -> list[str]:
    """The lines outside fenced code blocks (a ``# comment`` in a shell block is no heading)."""
    lines, fenced = [], False
    for line in path.read_text("utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def links(path: Path) -> list[str]:
    found: list[str] = []
    for line in prose_lines(path):
        found.extend(INLINE_LINK.findall(CODE_SPAN.sub("", line)))
        reference = REFERENCE_LINK.match(line)
        if reference:
            found.append(reference.group(1))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose_lines(path):
        heading = HEADING.match(line)
        if not heading:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for target in links(document):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return problems


def test_the_documents_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/api.md", "docs/quickstart.md", "docs/configuration.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_to_a_file_and_heading_in_the_repository(
    document: Path,
) -> None:
    assert broken_links(document) == []


def test_the_link_check_finds_links_outside_the_repository_and_missing_files_or_headings(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "architecture.md").write_text(
        "# Architecture\n\n## Read replicas\n\n```sh\n# not a heading\n```\n", encoding="utf-8"
    )
    readme = root / "README.md"
    readme.write_text(
        "[contract](../shared/spec/api.md) · [gone](docs/nothing.md) · "
        "[heading](docs/architecture.md#not-a-heading) · "
        "[fine](docs/architecture.md#read-replicas) · [web](https://example.org/x)\n"
        "```sh\n[in a code block](in/a/code/block.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(readme, root) == [
        "../shared/spec/api.md: outside the repository",
        "docs/nothing.md: no such file",
        "docs/architecture.md#not-a-heading: no heading #not-a-heading in docs/architecture.md",
    ]


def test_the_readme_points_at_the_contract_inside_the_repository() -> None:
    assert "](docs/api.md)" in (ROOT / "README.md").read_text("utf-8")


def test_the_contract_in_docs_is_the_shared_contract_under_a_one_line_header() -> None:
    header, blank, *contract = (ROOT / "docs" / "api.md").read_text("utf-8").splitlines()
    assert header.startswith("> The API contract this repository implements")
    assert blank == ""
    assert contract[0] == "# Health Information Service: the API contract"


# --- the README's layout section ------------------------------------------------------------


def layout_section() -> str:
    readme = (ROOT / "README.md").read_text("utf-8")
    match = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", readme, flags=re.S | re.M)
    assert match, "the README has no '## Layout' section"
    return match.group(1)


def package_directories() -> list[str]:
    return sorted(
        path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()
    )


def top_level_directories() -> list[str]:
    ignored = {".git", ".venv", "data", "build", "dist"}
    return sorted(
        path.name
        for path in ROOT.iterdir()
        if path.is_dir()
        and path.name not in ignored
        and not path.name.startswith(".")
        and not path.name.endswith(".egg-info")
        and any(child.name != "__pycache__" for child in path.iterdir())
    )


def test_the_layout_names_every_package_under_src_healthinfo() -> None:
    section = layout_section()
    missing = [name for name in package_directories() if not re.search(rf"\b{name}/", section)]
    assert missing == []


def test_the_layout_names_every_top_level_directory() -> None:
    section = layout_section()
    missing = [name for name in top_level_directories() if not re.search(rf"\b{name}/", section)]
    assert missing == []


def test_the_layout_names_no_package_that_does_not_exist() -> None:
    section = layout_section()
    block = section.split("src/healthinfo/", 1)[1].split("tests/", 1)[0]
    named = re.findall(r"^\s{2}(\w+)/", block, flags=re.M)
    assert sorted(named) == package_directories()


# --- the README's word on logs ------------------------------------------------------------------


def test_the_readme_says_logs_are_console_on_a_terminal_json_otherwise_and_how_to_force() -> None:
    """tests/integration/test_log_format.py proves the behaviour; this, that a newcomer is told
    it, with the name of a setting that exists."""
    from healthinfo.config import Settings

    readme = " ".join((ROOT / "README.md").read_text("utf-8").split())
    assert "structlog's console layout" in readme
    assert "in a terminal" in readme
    assert "one JSON object per line" in readme
    forced = re.search(r"`(HEALTHINFO_[A-Z_]+)=true`\s+or\s+`false`\s+forces either", readme)
    assert forced, "the README does not say how to force JSON or the console layout"
    assert forced.group(1).removeprefix("HEALTHINFO_").lower() in Settings.model_fields
