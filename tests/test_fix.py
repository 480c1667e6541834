"""`ttsdoctor fix`: expected results per fixture, idempotency, safety (atomic, backups, rollback, SIGKILL)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, run_cli, run_main
from fixture_cases import WEIGHT_SUFFIXES, Case, all_cases, apply_fixes, changed_files, fixable

from ttsdoctor import engine, fixer, fsio
from ttsdoctor.artifacts.row_stats import read_rows
from ttsdoctor.artifacts.weights import read_safetensors_header
from ttsdoctor.discover import discover
from ttsdoctor.edits import apply_json, remove_json_key, set_json_value, set_yaml_value
from ttsdoctor.finding import Applicability, Finding, Fix, Location, SetJsonValue, Severity
from ttsdoctor.registry import ALL_RULES
from ttsdoctor.rule import Rule

FIXABLE = [c for c in all_cases() if fixable(c)]


def _tree(path: str) -> dict[str, bytes]:
    out = {}
    for directory, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != fsio.BACKUP_DIR]
        for name in filenames:
            full = os.path.join(directory, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def test_every_fixable_rule_has_a_fixed_case() -> None:
    assert {c.rule_id for c in FIXABLE} >= {
        "TOK001",
        "TOK005",
        "TOK006",
        "TOK007",
        "VOC001",
        "VOC002",
        "FRZ001",
        "FRZ002",
        "GEN001",
        "GEN003",
        "ATT001",
        "ATT002",
    }


@pytest.mark.parametrize("case", FIXABLE, ids=str)
def test_fix_gives_expected_files_and_removes_the_finding(case: Case, tmp_path) -> None:
    code, copy = apply_fixes(case, str(tmp_path))
    assert code in (0, 1)
    changed = {rel: data for rel, data in changed_files(case.path, copy).items() if not rel.endswith(WEIGHT_SUFFIXES)}
    expected = _tree(case.fixed_path)
    assert changed == expected
    result = engine.run(ALL_RULES, discover([copy]))
    assert not [f for f in result.findings if f.rule_id == case.rule_id and f.severity is not Severity.INFO]
    before = _tree(copy)
    code, out = run_main("fix", copy, "--apply", "--unsafe-fixes", "--select", case.rule_id)
    assert "Applied 0 fixes" in out
    assert _tree(copy) == before  # a second fix --apply changes nothing


def test_dry_run_prints_diff_exits_1_and_writes_nothing(tmp_path) -> None:
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), tmp_path / "m")
    before = _tree(str(tmp_path / "m"))
    code, out, _ = run_cli("fix", str(tmp_path / "m"))
    assert code == 1
    assert '-  "pad_token_id": 0,' in out and '+  "pad_token_id": 272,' in out
    assert _tree(str(tmp_path / "m")) == before
    assert not (tmp_path / "m" / fsio.BACKUP_DIR).exists()
    assert run_cli("fix", "fixtures/TOK001/good/outetts-distinct-pad")[0] == 0


def _exact_rows_model(tmp_path) -> str:
    """The qwen2-pad-in-eos-list case with no free padding row: the pad fix must grow the weights."""
    src = os.path.join(ROOT, "fixtures/TOK001/bad/qwen2-pad-in-eos-list")
    model = str(tmp_path / "m")
    shutil.copytree(src, model)
    from safetensors.numpy import load_file, save_file

    weights = load_file(os.path.join(model, "model.safetensors"))
    ids = 339
    save_file(
        {
            "model.embed_tokens.weight": weights["model.embed_tokens.weight"][:ids],
            "lm_head.weight": weights["lm_head.weight"][:ids],
            "model.norm.weight": weights["model.norm.weight"],
        },
        os.path.join(model, "model.safetensors"),
    )
    config = json.loads(open(os.path.join(model, "config.json")).read())
    config["vocab_size"] = ids
    with open(os.path.join(model, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")
    return model


def test_unsafe_resize_needs_flag_and_grows_with_mean_rows(tmp_path) -> None:
    model = _exact_rows_model(tmp_path)
    code, out = run_main("fix", model)
    assert "fix not planned (unsafe: needs --unsafe-fixes)" in out
    weights_path = os.path.join(model, "model.safetensors")
    old = read_safetensors_header(weights_path).tensors
    old_rows = read_rows(old["model.embed_tokens.weight"], list(range(339)))
    inode = os.stat(weights_path).st_ino
    code, out = run_main("fix", model, "--unsafe-fixes")
    assert "model.embed_tokens.weight [339, 8] -> [340, 8] (1 new rows = mean of rows 0..338)" in out
    code, out = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "TOK001")
    assert code in (0, 1), out
    new = read_safetensors_header(weights_path).tensors
    assert new["model.embed_tokens.weight"].shape == (340, 8) and new["lm_head.weight"].shape == (340, 8)
    rows = read_rows(new["model.embed_tokens.weight"], list(range(340)))
    np.testing.assert_array_equal(rows[:339], old_rows)
    np.testing.assert_allclose(rows[339], old_rows.mean(axis=0), atol=1e-3)
    assert json.loads(open(os.path.join(model, "config.json")).read())["vocab_size"] == 340
    tok = json.loads(open(os.path.join(model, "tokenizer.json")).read())
    assert tok["added_tokens"][-1]["content"] == "<|pad|>" and tok["added_tokens"][-1]["id"] == 339
    # the original weights are kept as a hard link in the backup directory
    backups = [line.split(" -> ")[1] for line in out.splitlines() if "model.safetensors ->" in line]
    assert backups and os.stat(backups[0]).st_ino == inode
    result = engine.run(ALL_RULES, discover([model]))
    assert not [f for f in result.findings if f.severity is Severity.ERROR]


def test_head_bias_grows_with_the_head(tmp_path) -> None:
    """A 1-D lm_head.bias has a row per id too: the pad fix grows it with the mean bias."""
    from safetensors.numpy import load_file, save_file

    model = _exact_rows_model(tmp_path)
    path = os.path.join(model, "model.safetensors")
    tensors = load_file(path)
    bias = np.random.default_rng(0).standard_normal(339).astype(tensors["lm_head.weight"].dtype)
    save_file({**tensors, "lm_head.bias": bias}, path)
    code, out = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "TOK001")
    assert code in (0, 1), out
    grown = load_file(path)
    assert grown["lm_head.bias"].shape == (340,)
    np.testing.assert_array_equal(grown["lm_head.bias"][:339], bias)
    np.testing.assert_allclose(grown["lm_head.bias"][339], bias.astype(np.float64).mean(), rtol=1e-3)
    result = engine.run(ALL_RULES, discover([model]))
    assert not [f for f in result.findings if f.severity is Severity.ERROR]


def test_json_edits_keep_order_indent_and_trailing_newline() -> None:
    text = '{\n    "b": 1,\n    "a": {\n        "x": [1, 2]\n    },\n    "c": "é"\n}\n'
    assert set_json_value(text, "/b", 5) == text.replace('"b": 1', '"b": 5')
    assert set_json_value(text, "/d", None).endswith('    "c": "é",\n    "d": null\n}\n')
    assert remove_json_key(text, "/b") == '{\n    "a": {\n        "x": [1, 2]\n    },\n    "c": "é"\n}\n'
    assert remove_json_key(text, "/c") == '{\n    "b": 1,\n    "a": {\n        "x": [1, 2]\n    }\n}\n'
    assert apply_json("{}", [SetJsonValue("x", "/a", 1)]) == '{\n  "a": 1\n}'


def test_yaml_edit_keeps_comments_and_quotes() -> None:
    text = "# top\nmodel:  # the model\n  n_vocab: 887   # built with\n  name: 'x'  # keep\n"
    assert set_yaml_value(text, "/model/n_vocab", 2535) == text.replace("887", "2535")


class _BreakingRule(Rule):
    """A rule whose 'fix' introduces a new error (a string vocab_size): the re-check must roll it back."""

    id = "TOK001"
    name = "breaking"
    summary = "test"
    severity = Severity.WARNING

    def check_model(self, target):
        if target.config is not None and isinstance(target.config.data.get("vocab_size"), int):
            yield Finding(
                "TOK001",
                "breaking",
                Severity.WARNING,
                "x",
                Location(target.config.path),
                {},
                Fix("break it", Applicability.SAFE, (SetJsonValue(target.config.path, "/vocab_size", "1"),)),
            )


def test_recheck_rolls_back_a_fix_that_introduces_an_error(tmp_path) -> None:
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/good/outetts-distinct-pad"), tmp_path / "m")
    before = _tree(str(tmp_path / "m"))
    rules = (*ALL_RULES, _BreakingRule())
    report = fixer.fix_and_verify(rules, discover([str(tmp_path / "m")]), unsafe=False)
    assert report.failure and "re-check failed" in report.failure and "ART002" in report.failure
    assert _tree(str(tmp_path / "m")) == before


def test_multi_file_fix_is_all_or_nothing(tmp_path, monkeypatch) -> None:
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), tmp_path / "m")
    before = _tree(str(tmp_path / "m"))
    real = fsio.atomic_write
    calls = []

    def failing(path, write):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, write)

    monkeypatch.setattr(fsio, "atomic_write", failing)
    code, _out = run_main("fix", str(tmp_path / "m"), "--apply")
    assert code == 2
    monkeypatch.setattr(fsio, "atomic_write", real)
    assert _tree(str(tmp_path / "m")) == before


def test_overlapping_edits_are_never_both_applied() -> None:
    def finding(value: int) -> Finding:
        return Finding(
            "TOK005",
            "x",
            Severity.WARNING,
            f"m{value}",
            Location("fixtures/x/config.json"),
            {},
            Fix(
                f"set {value}",
                Applicability.SAFE,
                (
                    SetJsonValue(
                        os.path.join(ROOT, "fixtures/TOK005/bad/pad-differs-across-levels/config.json"),
                        "/pad_token_id",
                        value,
                    ),
                ),
            ),
        )

    planned = fixer.plan([finding(1), finding(2)])
    assert len(planned.fixes) == 1 and planned.skipped[0][1].startswith("overlaps")


SIGKILL_SCRIPT = """
import os, sys, time
from ttsdoctor import edits
real = edits.resize_writer
def slow(path, resizes):
    write = real(path, resizes)
    def wrapped(fh):
        class Slow:
            def __init__(self, fh): self.fh = fh
            def write(self, data):
                self.fh.write(data)
                open(sys.argv[2], "w").close()   # tell the parent we are mid-write
                time.sleep(0.05)
        write(Slow(fh))
    return wrapped
edits.resize_writer = slow
import ttsdoctor.fixer as fixer
fixer.resize_writer = slow
from ttsdoctor.cli import main
main(["fix", sys.argv[1], "--apply", "--unsafe-fixes", "--select", "TOK001"])
"""


def test_sigkill_mid_weights_rewrite_leaves_original_intact(tmp_path) -> None:
    model = _exact_rows_model(tmp_path)
    weights = os.path.join(model, "model.safetensors")
    digest = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    marker = tmp_path / "mid-write"
    proc = subprocess.Popen([sys.executable, "-c", SIGKILL_SCRIPT, model, str(marker)], cwd=ROOT)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), "the fix never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert hashlib.sha256(open(weights, "rb").read()).hexdigest() == digest
    assert read_safetensors_header(weights).tensors["model.embed_tokens.weight"].shape == (339, 8)


def test_no_backups_leaves_no_backup_directory(tmp_path) -> None:
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), tmp_path / "m")
    code, out = run_main("fix", str(tmp_path / "m"), "--apply", "--no-backups")
    assert code == 0 and "backups:" not in out
    assert not (tmp_path / "m" / fsio.BACKUP_DIR).exists()
    assert json.loads((tmp_path / "m" / "config.json").read_text())["pad_token_id"] == 272


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model: {n_vocab: 2535, freeze: 3000}\n", "model: {n_vocab: 2535, freeze: 2454}\n"),
        ("model: {freeze: 3000, n_vocab: 2535}\n", "model: {freeze: 2454, n_vocab: 2535}\n"),
        ("model:\n  freeze: 3000  # note\n", "model:\n  freeze: 2454  # note\n"),
        ("model: {name: \"a, b\", freeze: '3,0'}\n", 'model: {name: "a, b", freeze: 2454}\n'),
        ("base: &b 3000\nmodel:\n  freeze: *b\n", None),  # an alias: not edited in place, never a traceback
    ],
)
def test_yaml_edit_in_flow_mappings_quotes_and_aliases(text: str, expected: str | None) -> None:
    from ttsdoctor.edits import EditError, set_yaml_value

    if expected is None:
        with pytest.raises(EditError, match="anchor or alias 'b'"):
            set_yaml_value(text, "/model/freeze", 2454)
        return
    assert set_yaml_value(text, "/model/freeze", 2454) == expected


def test_python_edits_are_compiled_and_notebook_await_still_compiles() -> None:
    from ttsdoctor.edits import EditError, apply_python
    from ttsdoctor.finding import ReplaceSource

    text = "x = await load()\ny = 1\n"  # top-level await: valid in a notebook cell
    assert apply_python(text, [ReplaceSource("a.py", 21, 22, "2")]) == "x = await load()\ny = 2\n"
    with pytest.raises(EditError, match="does not compile: 'return' outside function"):
        apply_python("y = 1\n", [ReplaceSource("a.py", 0, 5, "return 1")])  # parses, does not compile
