"""The repository keeps its promises to a newcomer: README commands, CI, layout."""

from __future__ import annotations

import os
import re

from conftest import ROOT


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def test_readme_has_two_quickstart_commands_and_ci_runs_the_test_one() -> None:
    quickstart = _readme().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", quickstart)
    assert len(commands) == 2
    setup_check, test = commands
    assert "ttsdoctor check fixtures/" in setup_check
    fixture = setup_check.rsplit(" ", 1)[1]
    assert os.path.isdir(os.path.join(ROOT, fixture))
    assert "pytest" in test and test.index("torch==") < test.index("-e '.[")
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as fh:
        assert test in fh.read().splitlines()


def test_required_top_level_layout() -> None:
    for name in ("pyproject.toml", "ttsdoctor", "rules", "fixtures", "tests", "README.md"):
        assert os.path.exists(os.path.join(ROOT, name)), name


def test_readme_sections_appear_once() -> None:
    headings = re.findall(r"^#+ .+$", _readme(), flags=re.MULTILINE)
    assert len(headings) == len(set(headings)), sorted(h for h in headings if headings.count(h) > 1)


def test_readme_limits_table_is_the_one_limits_py_generates() -> None:
    from ttsdoctor.limits import markdown_table

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        assert markdown_table() in fh.read()
