"""Reading a PR description written in vLLM's template (.github/PULL_REQUEST_TEMPLATE.md):
the title's `[Tag]`s, the Purpose / Test Plan / Test Result sections, and the commands of the
Test Plan."""

from __future__ import annotations

import re
from dataclasses import dataclass

# vLLM's contributing guide lists these; reviewers see others ([V1], [Perf]) often enough that
# any bracketed tag passes, and the list only goes into the hint.
KNOWN_TAGS = ("Bugfix", "CI/Build", "Doc", "Model", "Frontend", "Kernel", "Core",
              "Hardware][Vendor", "Misc")
TITLE = re.compile(r"^((?:\[[^\[\]]+\])+)\s*(\S.*)$")
SECTION = re.compile(r"^#{2,3}\s*(.+?)\s*$", re.M)
COMMENT = re.compile(r"<!--.*?-->", re.S)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
REQUIRED = ("Purpose", "Test Plan", "Test Result")


@dataclass
class PRText:
    title: str
    body: str
    sections: dict[str, str]  # heading -> text, comments removed

    @property
    def tags(self) -> list[str]:
        m = TITLE.match(self.title)
        return re.findall(r"\[([^\]]+)\]", m.group(1)) if m else []


def parse(text: str) -> PRText:
    """The first non-empty line is the title ("# ", "Title:" stripped); the rest is the body."""
    lines = text.splitlines()
    title, rest = "", []
    for i, line in enumerate(lines):
        if line.strip():
            title = re.sub(r"^(#\s*|title:\s*)", "", line.strip(), flags=re.I).strip()
            rest = lines[i + 1:]
            break
    body = "\n".join(rest)
    clean = COMMENT.sub("", body)
    sections: dict[str, str] = {}
    marks = list(SECTION.finditer(clean))
    for j, m in enumerate(marks):
        end = marks[j + 1].start() if j + 1 < len(marks) else len(clean)
        text_ = clean[m.end():end]
        text_ = text_.split("\n---", 1)[0]  # the template's checklist follows a rule
        sections[m.group(1).strip()] = text_.strip()
    return PRText(title, body, sections)


def section(pr: PRText, name: str) -> str:
    for heading, text in pr.sections.items():
        if heading.lower().rstrip(":").startswith(name.lower()):
            return text
    return ""


def commands(test_plan: str) -> list[str]:
    """Shell commands of a Test Plan: the lines of its fenced code blocks (a `$ ` prompt and
    comment lines dropped), else inline `pytest ...` / `python ...` spans."""
    found = []
    for block in FENCE.findall(test_plan):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if line and not line.startswith("#"):
                found.append(line)
    if not found:
        found = [c.strip() for c in re.findall(r"`([^`\n]+)`", test_plan)
                 if re.match(r"\s*(python3?|pytest)\b", c)]
    return found


def links_rfc(body: str) -> bool:
    """The body names an RFC issue: 'RFC' and an issue reference (#1234 or an issues URL)."""
    return bool(re.search(r"\bRFC\b", body, re.I)) and bool(
        re.search(r"(#\d+|github\.com/[^/\s]+/[^/\s]+/issues/\d+)", body))
