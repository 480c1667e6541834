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


SPARK_FP16 = os.path.join(ROOT, "fixtures/ENV003/bad/spark-tts-llm-saved-float16")


def _codes(path: str, code: str) -> list[dict]:
    return [f for f in json.loads(run_main("check", path, "--format", "json")[1])["findings"] if f["code"] == code]


def test_spark_saved_in_bfloat16_is_fine_and_on_a_t4_the_fallback_is_float32(tmp_path, monkeypatch) -> None:
    """The Spark-TTS LLM folder as published (bfloat16) has no ENV003; on a T4, ENV002 advises float32 for it, not
    the float16 it advises for other models, and the smoke proof picks float32 there."""
    from ttsdoctor import smoke
    from ttsdoctor.artifacts.model_dir import load_model_dir

    folder = tmp_path / "LLM"
    shutil.copytree(SPARK_FP16, folder)
    config = json.loads((folder / "config.json").read_text())
    assert _codes(str(folder), "ENV003") and config["torch_dtype"] == "float16"
    (folder / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    assert _codes(str(folder), "ENV003") == []
    monkeypatch.setenv("TTSDOCTOR_GPU", "Tesla T4:7.5")
    environment.gpu_compute_capabilities.cache_clear()
    try:
        (env002,) = _codes(str(folder), "ENV002")
        assert "load with dtype=torch.float32 (Spark-TTS overflows float16)" in env002["message"]
        (other,) = _codes(os.path.join(ROOT, "fixtures/ENV002/bad/bf16-on-t4"), "ENV002")
        assert other["message"].endswith("load with dtype=torch.float16")
    finally:
        monkeypatch.delenv("TTSDOCTOR_GPU")
        environment.gpu_compute_capabilities.cache_clear()
    assert smoke.float16_overflow(load_model_dir(str(folder))).startswith("Spark-TTS: FlashTTS issues #3 and #43")
    assert smoke.float16_overflow(load_model_dir(os.path.join(ROOT, "fixtures/ENV002/bad/bf16-on-t4"))) == ""


def test_float16_for_an_overflowing_family_is_found_however_it_is_written(tmp_path) -> None:
    """Each way scripts ask for float16 (dtype argument, run-time choice through a name, `.half()`, `.to()`, vLLM's
    "half"), only on a load of the family's model: not its speech tokenizer, not another family."""
    script = tmp_path / "infer.py"
    script.write_text(
        "import torch\nfrom transformers import AutoModelForCausalLM\nfrom vllm import LLM\n"
        'SPARK = "pretrained_models/Spark-TTS-0.5B/LLM"\n'
        "a = AutoModelForCausalLM.from_pretrained(SPARK, torch_dtype=torch.float16)\n"  # line 5
        "b = AutoModelForCausalLM.from_pretrained(SPARK)\n"
        "b = b.to(torch.half)\n"  # line 7
        'c = LLM(model="SparkAudio/Spark-TTS-0.5B", dtype="half")\n'  # line 8
        'd = AutoModelForCausalLM.from_pretrained("canopylabs/orpheus-3b-0.1-ft", torch_dtype=torch.float16)\n'
        'e = AutoModelForCausalLM.from_pretrained("Qwen/Qwen3-TTS-Tokenizer-12Hz", dtype=torch.float16)\n'
        "f = AutoModelForCausalLM.from_pretrained(SPARK, torch_dtype=torch.bfloat16)\n"
        "g = AutoModelForCausalLM.from_pretrained(SPARK, torch_dtype=torch.float32).half()\n"  # line 12
    )
    found = _codes(str(script), "ENV003")
    assert [f["line"] for f in found] == [5, 7, 8, 12], found
    assert {f["evidence"]["family"] for f in found} == {"Spark-TTS"}
    # a name built from itself is read as it was before (this recursed without end once)
    script.write_text(
        'import torch\nfrom transformers import AutoModelForCausalLM\nx = "pretrained_models/Spark-TTS-0.5B"\n'
        'x = f"{x}/LLM"\nd = torch.float16\nd = d if d else torch.float16\n'
        "m = AutoModelForCausalLM.from_pretrained(x, torch_dtype=d)\n"
    )
    (found,) = _codes(str(script), "ENV003")
    assert "chooses float16 for Spark-TTS in one branch (`d if d else torch.float16`)" in found["message"]
