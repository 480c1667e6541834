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


def test_a_rule_in_the_former_untyped_form_is_refused_at_definition() -> None:
    from ttsdoctor.rule import Rule

    with pytest.raises(TypeError, match="defines check, targets: define check_model"):

        class Old(Rule):  # would never run: the engine dispatches on the typed methods
            targets = ("model_dir",)

            def check(self, target):
                yield from ()


def test_rule_metadata_is_well_formed() -> None:
    ids = [r.id for r in ALL_RULES]
    assert len(ids) == len(set(ids))
    for rule in ALL_RULES:
        assert rule.name == rule.name.lower() and " " not in rule.name
        assert not rule.summary.endswith(".")
        assert rule.targets or rule.reviews_suppressions  # SUP001 is handed its findings by the engine


def test_messages_have_no_trailing_period() -> None:
    for case in CASES:
        for finding in actual_findings(case):
            assert not finding["message"].endswith("."), finding


def test_readme_rule_table_is_generated_from_the_rule_classes() -> None:
    from ttsdoctor.ruledocs import rule_table

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert rule_table(ALL_RULES) in readme, "README.md's rule table is stale: run `python -m ttsdoctor.dev readme`"


def test_new_rule_scaffold_registers_documents_and_lists_the_rule(tmp_path) -> None:
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "ttsdoctor"), copy / "ttsdoctor", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(ROOT, "rules"), copy / "rules")
    shutil.copy(os.path.join(ROOT, "README.md"), copy / "README.md")
    (copy / "fixtures").mkdir()
    import sysconfig

    # -S: no site hooks, so the editable install of the real repository cannot shadow the copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), sysconfig.get_paths()["purelib"]])}
    args = ["new-rule", "TOK099", "pad-after-eos", "--module", "tokens", "--summary", "The pad id follows the eos id"]
    dev = [sys.executable, "-S", "-m", "ttsdoctor.dev", *args]
    proc = subprocess.run(dev, capture_output=True, text=True, env=env, cwd=copy)
    assert proc.returncode == 0, proc.stderr
    check = (
        "import sys\nfrom ttsdoctor.registry import RULES_BY_ID\n"
        "from ttsdoctor.ruledocs import read_doc, rule_table, SECTIONS\n"
        "from ttsdoctor.registry import ALL_RULES\n"
        "rule = RULES_BY_ID['TOK099']; doc = read_doc('TOK099')\n"
        "assert rule.name == 'pad-after-eos' and rule.targets == ('model_dir',)\n"
        "assert doc.startswith('# TOK099 pad-after-eos\\n') and all(f'## {s}' in doc for s in SECTIONS)\n"
        "assert rule_table(ALL_RULES) in open('README.md').read()\n"
        "assert list(rule.check_model(None)) == []\n"
        "import ttsdoctor; assert ttsdoctor.__file__.startswith(sys.argv[1])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", check, str(copy)], capture_output=True, text=True, env=env, cwd=copy
    )
    assert proc.returncode == 0, proc.stderr
    assert (copy / "fixtures/TOK099/bad/example/config.json").is_file()
    assert (copy / "fixtures/TOK099/good/example/config.json").is_file()
    # a new family gets its own module, created with the imports its first rule needs
    args = [
        "new-rule",
        "XYZ001",
        "xyz-rows",
        "--module",
        "xyzfamily",
        "--target",
        "training_config",
        "--summary",
        "x",
    ]
    proc = subprocess.run([*dev[:4], *args], capture_output=True, text=True, env=env, cwd=copy)
    assert proc.returncode == 0, proc.stderr
    module = (copy / "ttsdoctor/checks/xyzfamily.py").read_text()
    assert "from ttsdoctor.artifacts.training_config import TrainingConfig" in module
    assert "def check_training_config(self, target: TrainingConfig)" in module
    bad = ["new-rule", "XYZ002", "x-y", "--module", "../escape", "--summary", "x"]
    proc = subprocess.run([*dev[:4], *bad], capture_output=True, text=True, env=env, cwd=copy)
    assert proc.returncode == 2 and not (copy / "ttsdoctor/escape.py").exists()


@pytest.mark.slow
def test_generated_fixtures_are_what_their_generator_writes(tmp_path) -> None:
    """fixtures/_make.py run again in a scratch copy changes nothing (torch.save's random serialization_id aside)."""
    import hashlib
    import shutil
    import subprocess
    import sys
    import zipfile

    scratch = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, scratch, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, str(scratch / "_make.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    def digests(root: str) -> dict[str, str]:
        out = {}
        for directory, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                if "__pycache__" not in path and not os.path.islink(path):
                    with open(path, "rb") as fh:
                        out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
        return out

    committed, again = digests(FIXTURES), digests(str(scratch))
    assert set(committed) == set(again), set(committed) ^ set(again)
    for rel in sorted(k for k in committed if committed[k] != again[k]):
        a, b = os.path.join(FIXTURES, rel), os.path.join(scratch, rel)
        assert zipfile.is_zipfile(a) and zipfile.is_zipfile(b), f"{rel} is stale: run python fixtures/_make.py"
        with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
            assert za.namelist() == zb.namelist(), rel
            stale = [n for n in za.namelist() if not n.endswith("serialization_id") and za.read(n) != zb.read(n)]
            assert not stale, f"{rel}: {stale} differ: run python fixtures/_make.py"
