"""The ecosystem runner's verdicts, on a corpus of one entry whose findings are given: what fails the check."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("ecosystem_run", os.path.join(ROOT, "ecosystem", "run.py"))
assert spec is not None and spec.loader is not None
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)

FINDING = {"entry": "a", "code": "TOK001", "severity": "error", "path": "x.json", "line": 1, "cell": None}


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    (tmp_path / "trees" / "a").mkdir(parents=True)
    (tmp_path / "corpus.json").write_text(json.dumps({"version": 1, "entries": [{"id": "a"}]}))
    monkeypatch.setattr(run, "CORPUS", str(tmp_path / "corpus.json"))
    monkeypatch.setattr(run, "LABELS", str(tmp_path / "labels.json"))
    monkeypatch.setattr(run, "run_check", lambda corpus_dir, entry_id: [{**FINDING, "message": "pad == eos"}])
    return tmp_path


def _labels(path, label: str) -> None:
    row = {**FINDING, "message": "pad == eos", "label": label, "why": ""}
    path.write_text(json.dumps({"version": 1, "findings": [row], "infos": {}}))


def test_a_new_finding_fails_and_update_stores_it_unlabelled(corpus) -> None:
    assert run.compare(str(corpus / "trees"), update=True) == 1
    (row,) = json.loads((corpus / "labels.json").read_text())["findings"]
    assert row["label"] == "unlabelled"


def test_a_stored_but_unlabelled_finding_still_fails(corpus, capsys) -> None:
    _labels(corpus / "labels.json", "unlabelled")
    assert run.compare(str(corpus / "trees"), update=False) == 1
    assert "UNLABELLED error: a/x.json:1 TOK001" in capsys.readouterr().out
    _labels(corpus / "labels.json", "true")
    assert run.compare(str(corpus / "trees"), update=False) == 0
    _labels(corpus / "labels.json", "false")  # a false error fails
    assert run.compare(str(corpus / "trees"), update=False) == 1


def test_an_entry_id_given_twice_is_refused(corpus) -> None:
    (corpus / "corpus.json").write_text(json.dumps({"version": 1, "entries": [{"id": "a"}, {"id": "a"}]}))
    with pytest.raises(SystemExit, match="entry id given more than once: a"):
        run.compare(str(corpus / "trees"), update=False)
