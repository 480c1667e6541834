"""Every fixture case gives exactly its expected findings; the registry, docs and fixtures agree."""

from __future__ import annotations

import json
import os

import pytest
from fixture_cases import FIXTURES, ROOT, Case, actual_findings, all_cases

from ttsdoctor.registry import ALL_RULES, RULES_BY_ID
from ttsdoctor.ruledocs import SECTIONS, doc_ids, read_doc

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case_gives_expected_findings(case: Case) -> None:
    actual = actual_findings(case)
    if case.kind == "good":
        assert all(f["severity"] == "info" for f in actual), actual
    else:
        assert any(f["severity"] in ("error", "warning") for f in actual), f"{case} finds nothing"
    expected: list = []
    if os.path.exists(case.expected_path):
        with open(case.expected_path, encoding="utf-8") as fh:
            expected = json.load(fh)
    assert actual == expected


def test_every_rule_has_doc_and_good_and_bad_fixtures() -> None:
    for rule in ALL_RULES:
        kinds = {c.kind for c in CASES if c.rule_id == rule.id}
        assert kinds == {"good", "bad"}, f"{rule.id} needs good and bad fixtures, has {sorted(kinds)}"
        doc = read_doc(rule.id)
        assert doc is not None, f"rules/{rule.id}.md is missing"
        assert doc.startswith(f"# {rule.id} {rule.name}\n"), f"rules/{rule.id}.md must start with its id and name"
        for heading in SECTIONS:
            assert f"\n## {heading}\n" in doc, f"rules/{rule.id}.md lacks the section {heading!r}"


def test_no_orphan_docs_or_fixtures() -> None:
    assert set(doc_ids()) == set(RULES_BY_ID), "rules/*.md and the registry disagree"
    fixture_dirs = {
        d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)) and not d.startswith(("_", "."))
    }
    assert fixture_dirs - set(RULES_BY_ID) <= {"hostile", "projects"}, fixture_dirs - set(RULES_BY_ID)


def test_rule_metadata_is_well_formed() -> None:
    ids = [r.id for r in ALL_RULES]
    assert len(ids) == len(set(ids))
    for rule in ALL_RULES:
        assert rule.name == rule.name.lower() and " " not in rule.name
        assert not rule.summary.endswith(".")
        assert rule.targets or rule.id == "SUP001"  # SUP001 is reported by the engine itself


def test_messages_have_no_trailing_period() -> None:
    for case in CASES:
        for finding in actual_findings(case):
            assert not finding["message"].endswith("."), finding


def test_readme_lists_every_rule() -> None:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    for rule in ALL_RULES:
        assert f"`{rule.id}`" in readme, f"README.md does not list {rule.id}"
