"""Every relative link and image of README.md and docs/**/*.md resolves.

A link is ``[text](target)`` or ``![alt](target)`` outside code (fenced blocks, indented blocks,
inline code spans). Absolute URLs (http, https, mailto) are not fetched. A relative target must
name an existing file or folder (relative to the Markdown file); a ``#fragment`` on a Markdown
target (or on its own) must name one of that file's headings, slugged as GitHub does.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def markdown_files() -> list[Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced and indented code blocks, inline code removed."""
    out, fence, prev_blank = [], None, True
    for n, line in enumerate(text.split("\n"), 1):
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)[0] * 3
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
        elif line.startswith("    ") and prev_blank and not re.match(r"^\s*([-*+]|\d+\.)\s", line):
            continue  # an indented code block (a list item's continuation is not one)
        else:
            out.append((n, re.sub(r"`+[^`]*`+", "", line)))
        prev_blank = line.strip() == "" or (prev_blank and line.startswith("    "))
    return out


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup and punctuation dropped, lower case, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _heading_lines(path):
        slug = github_slug(line)
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def _heading_lines(path: Path) -> list[tuple[int, str]]:
    fence, out = None, []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)[0] * 3
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if h:
            out.append((n, h.group(1)))
    return out


def broken_links(path: Path) -> list[str]:
    problems = []
    for n, line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto:
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / unquote(file_part)).resolve() if file_part else path
            where = f"{path.relative_to(REPO)}:{n}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                problems.append(f"{where} (no heading #{fragment} in {dest.relative_to(REPO)})")
    return problems


def test_slugs_follow_github():
    assert github_slug("Continuing their training run: `train --init-from`") == \
        "continuing-their-training-run-train---init-from"
    assert github_slug("Past 10,750: a plateau at lr 0.0025 (2026-12-07)") == "past-10750-a-plateau-at-lr-00025-2026-12-07"
    assert github_slug("The CPU presets: tuned for a 2-core budget") == "the-cpu-presets-tuned-for-a-2-core-budget"


def test_checker_finds_a_broken_link(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Top\n\n[ok](a.md#top) ![img](b.png) [bad](c.md) [anchor](a.md#nope)\n"
                                   "`[code](x.md)`\n\n    [indented](y.md)\n\n```\n[fenced](z.md)\n```\n")
    (tmp_path / "b.png").write_bytes(b"")
    found = broken_links(tmp_path / "a.md")
    assert len(found) == 2 and "c.md (no such file)" in found[0] and "#nope" in found[1], found


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []
