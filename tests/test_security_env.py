"""Security and environment rules, and `ttsdoctor doctor`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT, run_main

from ttsdoctor.checks import environment

HOSTILE = os.path.join(ROOT, "fixtures/SEC001/bad/pickle-runs-shell-command")


def test_hostile_pickle_is_reported_and_its_command_never_runs(tmp_path) -> None:
    shutil.copytree(HOSTILE, tmp_path / "m")
    proc = subprocess.run(
        [sys.executable, "-m", "ttsdoctor", "check", "m", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    findings = json.loads(proc.stdout)["findings"]
    assert [f["code"] for f in findings if f["code"] == "SEC001"] == ["SEC001"]
    assert "posix.system" in findings[0]["message"] or any("posix.system" in f["message"] for f in findings)
    assert not (tmp_path / "PWNED_BY_TTSDOCTOR_FIXTURE").exists()
    assert not os.path.exists(os.path.join(ROOT, "PWNED_BY_TTSDOCTOR_FIXTURE"))
    # the pickle really is hostile: plain pickle.load would have run the command
    assert b"system" in (tmp_path / "m" / "pytorch_model.bin").read_bytes()


def test_path_escape_is_never_read(tmp_path, monkeypatch) -> None:
    from ttsdoctor.artifacts import training_config

    opened = []
    real = training_config._load_named
    monkeypatch.setattr(training_config, "_load_named", lambda named: opened.append(named.resolved) or real(named))
    codes = [
        f["code"]
        for f in json.loads(run_main("check", "fixtures/SEC004/bad/tokenizer-path-escapes", "--format", "json")[1])[
            "findings"
        ]
    ]
    assert "SEC004" in codes
    assert not any(p and p.endswith("passwd") for p in opened)


def test_gpu_override_and_cache(monkeypatch) -> None:
    monkeypatch.setenv("TTSDOCTOR_GPU", "Tesla V100:7.0")
    environment.gpu_compute_capabilities.cache_clear()
    try:
        assert environment.gpu_compute_capabilities() == (("Tesla V100", 7.0),)
        payload = json.loads(run_main("check", "fixtures/ENV002/bad/bf16-on-t4", "--format", "json")[1])
        assert [f["evidence"]["gpu"] for f in payload["findings"] if f["code"] == "ENV002"] == ["Tesla V100"]
    finally:
        monkeypatch.delenv("TTSDOCTOR_GPU")
        environment.gpu_compute_capabilities.cache_clear()


def test_model_type_registry_read_without_importing_transformers() -> None:
    probe = (
        "import sys; from ttsdoctor.checks.environment import knows_model_type; "
        "print(knows_model_type('qwen2'), knows_model_type('llama'), knows_model_type('qwen9_omni_tts'), "
        "'transformers' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip() == "True True False False", proc.stderr


def test_doctor_reports_each_component() -> None:
    code, out = run_main("doctor")
    assert code == 0
    for name in ("Python", "tokenizers", "safetensors", "transformers", "torch", "attention: sdpa"):
        assert f"] {name}: " in out
    items = json.loads(run_main("doctor", "--format", "json")[1])
    assert {i["status"] for i in items} <= {"ok", "warning", "problem", "optional"}
    sdpa = next(i for i in items if i["name"] == "attention: sdpa")
    assert sdpa["status"] == "ok"
