"""Rule documentation: `rules/<ID>.md`, shipped inside the wheel as ttsdoctor/rules_docs."""

from __future__ import annotations

import os
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
DOC_DIRS = (os.path.join(_HERE, "rules_docs"), os.path.join(os.path.dirname(_HERE), "rules"))
SECTIONS = ("What it does", "Why is this bad?", "Example", "Use instead", "Fix safety")


def docs_dir() -> str | None:
    return next((d for d in DOC_DIRS if os.path.isdir(d)), None)


def read_doc(rule_id: str) -> str | None:
    directory = docs_dir()
    if directory is None:
        return None
    path = os.path.join(directory, f"{rule_id}.md")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def doc_ids() -> list[str]:
    directory = docs_dir()
    if directory is None:
        return []
    return sorted(name[:-3] for name in os.listdir(directory) if name.endswith(".md"))


def section(doc: str, heading: str) -> str:
    """The text under `## heading`, without the heading."""
    lines = doc.splitlines()
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("## "):
            inside = line[3:].strip() == heading
            continue
        if inside:
            out.append(line)
    return "\n".join(out).strip()


def rule_table(rules: tuple[Any, ...]) -> str:
    """The README's rule table, generated from the rule classes (tests/test_fixtures.py checks README.md holds it)."""
    rows = ["| Code | Name | Severity | What it finds |", "| --- | --- | --- | --- |"]
    rows += [f"| `{r.id}` | {r.name} | {r.severity.value} | {r.summary} |" for r in rules]  # registry order
    return "\n".join(rows) + "\n"
