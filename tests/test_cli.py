"""The CLI as a user runs it: exit codes, formats, paths, selection, and no heavy imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli, run_main

OUTETTS = os.path.join("fixtures", "TOK001", "bad", "outetts-pad-eos-0")
CLEAN = os.path.join("fixtures", "TOK001", "good", "outetts-distinct-pad")


def test_exit_codes_clean_findings_unreadable() -> None:
    assert run_cli("check", CLEAN)[0] == 0
    code, out, err = run_cli("check", OUTETTS)
    assert code == 1, err
    assert "TOK001" in out and "Found" in out
    code, out, err = run_cli("check", "fixtures/ART001/bad/truncated-files")
    assert code == 2
    assert "Traceback" not in out + err
    assert "fixtures/ART001/bad/truncated-files/model.safetensors" in out


def test_info_findings_do_not_fail() -> None:
    code, out, _ = run_cli("check", "fixtures/TOK001/good/parler-tts-by-design")
    assert code == 0
    assert "[info]" in out and "Parler-TTS" in out


def test_text_format_is_path_line_col_code_message() -> None:
    code, out = run_main("check", OUTETTS, "--select", "TOK001")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{OUTETTS}/config.json:25:3: TOK001 pad_token_id 0 ('!') equals eos_token_id")
    assert "\033[" not in out  # not a TTY: no colour


def test_colour_only_when_forced_and_no_color_wins(monkeypatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\033[" in run_main("check", OUTETTS)[1]
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\033[" not in run_main("check", OUTETTS)[1]


def test_json_schema_contract() -> None:
    code, out = run_main("check", OUTETTS, "--format", "json")
    assert code == 1
    payload = json.loads(out)
    assert payload["version"] == 1
    assert set(payload["summary"]) >= {"errors", "warnings", "infos", "fixable"}
    assert payload["summary"]["errors"] == sum(f["severity"] == "error" for f in payload["findings"])
    for f in payload["findings"]:
        assert set(f) == {"code", "name", "severity", "message", "path", "line", "column", "pointer", "evidence", "fix"}
        assert f["severity"] in ("error", "warning", "info")
        assert f["fix"] is None or set(f["fix"]) == {"title", "applicability"}
        assert not os.path.isabs(f["path"]) and f["path"].startswith(OUTETTS)
    tok001 = [f for f in payload["findings"] if f["code"] == "TOK001"]
    assert tok001[0]["evidence"]["pad"]["id"] == 0 and tok001[0]["evidence"]["eos"]["ids"] == [0]
    assert tok001[0]["fix"]["applicability"] == "safe"


def test_summary_says_which_fixes_need_unsafe_fixes() -> None:
    f5 = os.path.join(ROOT, "fixtures/VOC007/bad/f5-vocab-extended-42-symbols")  # one unsafe weights fix
    code, out = run_main("check", f5)
    assert code == 1
    assert out.rstrip().endswith("1 fixable with `ttsdoctor fix --unsafe-fixes`.")
    _code, out = run_main("check", f5, OUTETTS)
    assert out.rstrip().endswith("6 fixable with `ttsdoctor fix` (1 more with `--unsafe-fixes`).")
    payload = json.loads(run_main("check", f5, OUTETTS, "--format", "json")[1])
    assert payload["summary"]["fixable"] == 7 and payload["summary"]["fixable_unsafe"] == 1


def test_hard_exit_loses_no_output(tmp_path) -> None:
    """`check` leaves with os._exit: everything written to a pipe or to -o must still arrive."""
    code, out, _ = run_cli("check", "fixtures/TOK001", "fixtures/VOC001", "--format", "json")
    assert code == 1
    payload = json.loads(out)
    assert len(payload["findings"]) >= 30 and payload["summary"]["errors"] > 0
    code, out, _ = run_cli("check", "fixtures/TOK001", "--format", "sarif", "-o", str(tmp_path / "r.sarif"))
    assert code == 1 and json.loads((tmp_path / "r.sarif").read_text())["runs"][0]["results"]


@pytest.mark.slow
def test_closed_pipe_keeps_the_exit_code(tmp_path) -> None:
    """`ttsdoctor check . | head` under `set -o pipefail` must still fail CI when there are findings."""
    for copy in range(3):
        shutil.copytree(os.path.join(ROOT, "fixtures", "VOC001"), tmp_path / f"copy{copy}")
    full = subprocess.run(
        [sys.executable, "-m", "ttsdoctor", "check", str(tmp_path), "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert len(full.stdout) > 1 << 16  # more than a pipe holds (64 KiB on Linux): the writer meets the closed pipe
    proc = subprocess.Popen(
        [sys.executable, "-m", "ttsdoctor", "check", str(tmp_path), "--format", "json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.read(10)
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == full.returncode == 1
    assert b"Traceback" not in err


def test_absolute_paths_stay_absolute() -> None:
    path = os.path.join(ROOT, OUTETTS)
    payload = json.loads(run_main("check", path, "--format", "json")[1])
    assert all(f["path"].startswith(path) for f in payload["findings"])


def test_select_and_ignore_by_id_and_family() -> None:
    codes = {
        f["code"]
        for f in json.loads(run_main("check", OUTETTS, "--format", "json", "--select", "TOK001")[1])["findings"]
    }
    assert codes == {"TOK001"}
    codes = {
        f["code"] for f in json.loads(run_main("check", OUTETTS, "--format", "json", "--ignore", "TOK")[1])["findings"]
    }
    assert not any(c.startswith("TOK") for c in codes)
    code, _, err = run_cli("check", OUTETTS, "--select", "NOPE999")
    assert code == 2 and "unknown rule" in err


def test_missing_path_and_unsupported_file_exit_2() -> None:
    code, out, _err = run_cli("check", "no/such/dir")
    assert code == 2 and "no/such/dir" in out and "no such file" in out
    code, out, _ = run_cli("check", "README.md")
    assert code == 2 and "README.md" in out


def test_repository_tree_is_walked_and_caches_skipped(tmp_path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, OUTETTS), repo / "models" / "outetts")
    shutil.copytree(os.path.join(ROOT, OUTETTS), repo / ".venv" / "lib" / "outetts")
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK002/bad/pad-eos-with-collator"), repo / "src")
    (repo / "node_modules").mkdir()
    (repo / "node_modules" / "x.py").write_text("tokenizer.pad_token = tokenizer.eos_token\n")
    # a virtualenv committed under its own name, its interpreter a link out of the tree (codeman911's `tts/`)
    (repo / "tts" / "bin").mkdir(parents=True)
    (repo / "tts" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.9.6\n")
    (repo / "tts" / "bin" / "python3").symlink_to("/usr/bin/python3")
    (repo / "tts" / "bin" / "x.py").write_text("tokenizer.pad_token = tokenizer.eos_token\n")
    payload = json.loads(run_main("check", str(repo), "--format", "json")[1])
    paths = {f["path"] for f in payload["findings"]}
    assert any("models/outetts/config.json" in p for p in paths)
    assert any(p.endswith("src/finetune.py") for p in paths)
    assert not any({".venv", "node_modules", "tts"} & set(p.split("/")) for p in paths)
    assert payload["summary"]["model_dirs"] == 1 and payload["summary"]["sources"] == 1


def test_single_file_maps_to_its_model_dir() -> None:
    payload = json.loads(run_main("check", os.path.join(OUTETTS, "tokenizer_config.json"), "--format", "json")[1])
    assert any(f["code"] == "TOK001" and f["path"].endswith("generation_config.json") for f in payload["findings"])


def test_output_file(tmp_path) -> None:
    target = tmp_path / "report.json"
    assert run_main("check", OUTETTS, "--format", "json", "-o", str(target))[0] == 1
    assert json.loads(target.read_text())["version"] == 1


def test_rule_command() -> None:
    code, out = run_main("rule", "TOK001")
    assert code == 0 and "## Why is this bad?" in out and "pad-is-eos" in out
    code, out = run_main("rule", "--all")
    assert code == 0 and "TOK007" in out and "ART001" in out
    assert run_cli("rule", "XYZ001")[0] == 2


def test_check_never_imports_torch_or_transformers() -> None:
    probe = (
        "import sys, io; from ttsdoctor.cli import main; "
        f"main(['check', {OUTETTS!r}, 'fixtures/TOK002', 'fixtures/ART001'], out=io.StringIO()); "
        "heavy = [m for m in ('torch', 'transformers', 'textual') if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ttsdoctor.cli; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'transformers', 'textual')))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.stdout.strip() == "[]"


def test_version_and_usage_errors() -> None:
    assert run_cli("--version")[1].startswith("ttsdoctor ")
    code, _, err = run_cli("frobnicate")
    assert code == 2 and "invalid choice" in err


def test_prove_needs_apply() -> None:
    code, _, err = run_cli("fix", CLEAN, "--prove")
    assert code == 2 and "--prove runs with --apply" in err
