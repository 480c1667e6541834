"""The smoke proof on tiny random-weight Qwen2 models built here: every check fails on the bug and passes on the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_main
from tiny_models import (
    END_OF_TEXT,
    EOT,
    EOT_ID,
    IM_END,
    SPEECH_END,
    SPEECH_START,
    SPEECH_TOK,
    TINY_SHAPE,
    audio,
    build,
    build_speech,
)

from ttsdoctor import smoke


def status(report: smoke.SmokeReport, name: str) -> bool | None:
    check = report.check(name)
    assert check is not None, [c.name for c in report.checks]
    return check.passed


def test_pad_equals_eos_fails_batch_consistency_and_fix_prove_repairs_it(tmp_path) -> None:
    model = build(tmp_path / "m", pad=IM_END, eos=IM_END)
    before = smoke.run_smoke(model)
    assert status(before, "batch-consistency") is False and status(before, "warnings") is False
    assert "pad is an eos id: transformers cannot infer the mask" in before.check("batch-consistency").detail
    code, out = run_main("fix", model, "--apply", "--prove", "--select", "TOK001")
    assert code == 0, out
    assert "batch-consistency  FAIL   pass" in out and "before: FAILED, after: passed" in out
    after = smoke.run_smoke(model)
    assert after.passed and status(after, "batch-consistency") is True


def test_explicit_mask_passes_even_with_pad_equal_eos(tmp_path) -> None:
    model = build(tmp_path / "m", pad=IM_END, eos=IM_END)
    assert status(smoke.run_smoke(model, explicit_mask=True), "batch-consistency") is True


def test_vocab_mismatch_fails_highest_id_and_resize_fix_repairs_it(tmp_path) -> None:
    model = build(tmp_path / "m", pad=EOT, eos=IM_END, rows=320)
    before = smoke.run_smoke(model)
    assert status(before, "highest-id") is False and "338" in before.check("highest-id").detail
    _, out = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "VOC001")
    assert "fixed VOC001" in out, out
    assert status(smoke.run_smoke(model), "highest-id") is True


def test_generation_eos_on_ordinary_token_fails_eos_stops(tmp_path) -> None:
    model = build(tmp_path / "m", pad=EOT, eos=IM_END, generation={"eos_token_id": 2})
    before = smoke.run_smoke(model)
    assert status(before, "eos-stops") is False
    _, out = run_main("fix", model, "--apply", "--select", "TOK005")
    assert "fixed TOK005" in out, out
    assert status(smoke.run_smoke(model), "eos-stops") is True


def test_eager_pinned_fails_attention_and_fix_repairs_it(tmp_path) -> None:
    model = build(tmp_path / "m", pad=EOT, eos=IM_END, config={"attn_implementation": "eager"})
    before = smoke.run_smoke(model)
    check = before.check("attention")
    assert check is not None and check.passed is False and "'eager'" in check.detail
    assert check.data["sdpa_seconds"] > 0 and check.data["eager_seconds"] > 0 and check.data["eager_over_sdpa"] > 0
    _, out = run_main("fix", model, "--apply", "--select", "ATT002")
    assert "fixed ATT002" in out, out
    assert status(smoke.run_smoke(model), "attention") is True


def test_ignored_sampling_flags_fail_warnings(tmp_path) -> None:
    model = build(tmp_path / "m", pad=EOT, eos=IM_END, generation={"temperature": 0.7})
    report = smoke.run_smoke(model)
    assert status(report, "warnings") is False
    assert any("temperature" in w for w in report.check("warnings").data["predicted"])
    data = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    data["do_sample"] = True
    (tmp_path / "m" / "generation_config.json").write_text(json.dumps(data))
    assert status(smoke.run_smoke(model), "warnings") is True


def test_proof_failure_after_fix_rolls_back(tmp_path, monkeypatch) -> None:
    model = build(tmp_path / "m", pad=IM_END, eos=IM_END)
    original = {n: (tmp_path / "m" / n).read_bytes() for n in ("config.json", "generation_config.json")}
    real = smoke.run_smoke
    calls = []

    def failing_after(path, **kwargs):
        report = real(path, **kwargs)
        calls.append(path)
        if len(calls) == 2:
            report.checks.append(smoke.Check("highest-id", False, "injected failure"))
        return report

    monkeypatch.setattr(smoke, "run_smoke", failing_after)
    code, out = run_main("fix", model, "--apply", "--prove", "--select", "TOK001")
    assert code == 2 and "rolled back" in out
    assert {n: (tmp_path / "m" / n).read_bytes() for n in original} == original


def test_smoke_cli_json_report(tmp_path) -> None:
    model = build(tmp_path / "m", pad=EOT, eos=IM_END)
    code, out = run_main("smoke", model, "--format", "json", "-o", str(tmp_path / "r.json"))
    assert code == 0
    payload = json.loads(out)
    assert payload["passed"] is True and payload["device"] == "cpu" and payload["dtype"] == "float32"
    assert {c["name"] for c in payload["checks"]} == {
        "load",
        "highest-id",
        "batch-consistency",
        "eos-stops",
        "attention",
        "speech-tokens",
        "speech-stops",
        "warnings",
    }
    assert all(c["seconds"] > 0 for c in payload["checks"] if c["name"] != "warnings"), payload["checks"]
    speech = [c for c in payload["checks"] if c["name"].startswith("speech-")]
    assert all(c["passed"] is None and "no TTS family recognised" in c["detail"] for c in speech), speech
    attention = next(c for c in payload["checks"] if c["name"] == "attention")
    assert attention["data"]["repeats"] == 3 and len(attention["data"]["sdpa_runs"]) == 3
    assert attention["data"]["new_tokens"] == 8 and "median of 3 runs of 8 new tokens" in attention["detail"]
    assert json.loads((tmp_path / "r.json").read_text()) == payload


def test_device_and_dtype_choice_and_synchronised_timers(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert smoke.choose_device("auto") == ("cuda", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert smoke.choose_device("auto") == ("cuda", torch.float16)
    assert smoke.choose_device("cpu") == ("cpu", torch.float32)
    assert smoke.choose_device("auto", float16_overflows=True) == ("cuda", torch.float32)  # ENV003's families
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert smoke.choose_device("auto", float16_overflows=True) == ("cuda", torch.bfloat16)
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    value, seconds = smoke._timed("cuda", lambda: events.append("work") or 7)
    assert value == 7 and events == ["sync", "work", "sync"] and seconds >= 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(smoke.SmokeUnavailable, match="no CUDA"):
        smoke.choose_device("cuda")


def test_release_between_checks_frees_device_memory_on_cuda_only(monkeypatch) -> None:
    """On CUDA a tensor kept alive by a reference cycle holds device memory: a full collection, then the allocator's
    cache. On CPU only the young generations are collected (a full one costs ~0.3 s with transformers loaded)."""
    events = []
    monkeypatch.setattr(smoke.gc, "collect", lambda generation=2: events.append(f"collect {generation}"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: events.append("empty_cache"))
    smoke._release("cuda")
    assert events == ["collect 2", "empty_cache"]
    events.clear()
    smoke._release("cpu")
    assert events == ["collect 1"]


def test_missing_extra_names_it(tmp_path) -> None:
    model = build(tmp_path / "m", pad=EOT, eos=IM_END)
    probe = (
        "import sys; sys.modules['torch'] = None; from ttsdoctor.cli import main; "
        f"raise SystemExit(main(['smoke', {model!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "pip install 'ttsdoctor[smoke]'" in proc.stderr and "Traceback" not in proc.stderr


def test_pad_eos_only_in_the_configs_is_demonstrated_with_generates_own_ids_and_proven(tmp_path) -> None:
    """The tokenizer's pad is distinct, config.json and generation_config.json say pad == eos: generate() with
    nothing passed uses the generation config's pad, so the proof must fail before the fix (it used to pass)."""
    model = build(tmp_path / "m", pad=IM_END, eos=IM_END, tokenizer_config={"pad_token": "<|endoftext|>"})
    before = smoke.run_smoke(model)
    assert before.ids["pad"] == IM_END and before.ids["pad_from"] == "generation_config.json"
    assert before.ids["tokenizer_pad"] == EOT
    check = before.check("batch-consistency")
    assert check is not None and check.passed is False
    assert (
        f"pad {IM_END} (generation_config.json)" in check.detail
        and f"pad_token_id={EOT} from the tokenizer" in check.detail
    )
    runs = check.data["runs"]
    assert [r["same"] for r in runs] == [False, True]  # both ways reported: the tokenizer's pad would have passed
    code, out = run_main("fix", model, "--apply", "--prove", "--select", "TOK001")
    assert code == 0, out
    assert "fixed TOK001" in out and ": proven (batch-consistency: FAIL before, pass after)" in out
    assert "proven" in out.splitlines()[-1] and "not demonstrated" not in out


def test_a_fix_the_proof_cannot_show_is_never_called_proven(tmp_path, monkeypatch) -> None:
    """A proof whose checks pass before the fix as well (here: run with an explicit mask, which hides pad == eos)
    cannot have demonstrated anything: the fix is kept, and reported as not demonstrated, never as proven."""
    model = build(tmp_path / "m", pad=IM_END, eos=IM_END)
    real = smoke.run_smoke
    monkeypatch.setattr(smoke, "run_smoke", lambda path, **kw: real(path, **{**kw, "explicit_mask": True}))
    code, out = run_main("fix", model, "--apply", "--prove", "--select", "TOK001")
    assert code == 0, out
    assert "batch-consistency  pass   pass" in out
    assert "fixed TOK001" in out and "not demonstrated by the smoke run (batch-consistency, eos-stops passed" in out
    assert ": proven" not in out and "1 not demonstrated by the smoke run." in out


def test_output_attentions_in_generation_config_is_demonstrated_by_the_warning_it_causes(tmp_path) -> None:
    model = build(tmp_path / "m", pad=EOT, eos=IM_END, generation={"output_attentions": True})
    code, out = run_main("fix", model, "--apply", "--prove", "--select", "ATT001")
    assert code == 0 and ": proven (warnings: FAIL before, pass after)" in out, out


def test_smoke_lists_the_findings_it_demonstrates(tmp_path) -> None:
    model = build(tmp_path / "m", pad=IM_END, eos=IM_END)
    code, out = run_main("smoke", model)
    assert code == 1
    assert "demonstrates TOK001 at" in out and "(batch-consistency" in out


def test_smoke_on_a_project_folder_proves_the_model_inside_or_lists_them(tmp_path, capsys) -> None:
    build(tmp_path / "project" / "models" / "tts", pad=EOT, eos=IM_END)
    (tmp_path / "project" / "train.py").write_text("print('train')\n")
    code, out = run_main("smoke", str(tmp_path / "project"))
    assert code == 0 and "proving" in capsys.readouterr().err and "smoke proof of" in out
    build(tmp_path / "project" / "models" / "tts-2", pad=EOT, eos=IM_END)
    code, out = run_main("smoke", str(tmp_path / "project"))
    err = capsys.readouterr().err
    assert code == 2 and "holds 2 model directories; choose one" in err and "Traceback" not in err


# Llasa-shaped speech models whose next token is a chosen function of the current one (tiny_models.build_speech).
LLASA = {"do_sample": True, "temperature": 0.8, "pad_token_id": END_OF_TEXT}


def test_speech_checks_pass_on_a_model_that_speaks_and_stops(tmp_path) -> None:
    chain = {SPEECH_START: audio(5), audio(5): audio(9), audio(9): audio(1), audio(1): SPEECH_END}
    model = build_speech(tmp_path / "m", chain, {**LLASA, "eos_token_id": [SPEECH_END, EOT_ID], "max_new_tokens": 100})
    report = smoke.run_smoke(model)
    tokens, stops = report.check("speech-tokens"), report.check("speech-stops")
    assert tokens is not None and stops is not None
    assert tokens.passed is True and "Llasa: after <|SPEECH_GENERATION_START|>" in tokens.detail
    assert "all 3 generated tokens are audio tokens <|s_N|> (64 ids" in tokens.detail
    assert stops.passed is True and "after 3 audio tokens = 0.06 s of audio" in stops.detail
    assert "within the budget of 100 tokens = 2.00 s of audio (max_new_tokens 100" in stops.detail
    assert report.passed, [(c.name, c.detail) for c in report.checks if c.passed is False]


def test_text_inside_the_audio_section_fails_speech_tokens(tmp_path) -> None:
    letter = SPEECH_TOK.token_to_id("a")
    chain = {SPEECH_START: audio(5), audio(5): letter, letter: audio(1), audio(1): SPEECH_END}
    model = build_speech(tmp_path / "m", chain, {**LLASA, "eos_token_id": [SPEECH_END, EOT_ID], "max_new_tokens": 100})
    check = smoke.run_smoke(model).check("speech-tokens")
    assert check is not None and check.passed is False
    assert f"1 of 3 generated tokens are not audio tokens <|s_N|> (64 ids, {audio(0)}-{audio(63)})" in check.detail
    assert f"#1 'a' ({letter})" in check.detail and check.data["other_tokens"] == [letter]


def test_a_model_that_never_ends_runs_out_of_budget_or_is_inconclusive_under_the_cap(tmp_path) -> None:
    chain = {SPEECH_START: audio(5), audio(5): audio(6), audio(6): audio(5)}
    model = build_speech(tmp_path / "m", chain, {**LLASA, "eos_token_id": [SPEECH_END, EOT_ID], "max_new_tokens": 30})
    check = smoke.run_smoke(model).check("speech-stops")
    assert check is not None and check.passed is False
    assert check.detail.startswith("ran out of budget: 30 tokens = 0.60 s of audio generated without")
    assert check.data["generated"] == 30 and check.data["stop_at"] is None
    capped = smoke.run_smoke(model, max_speech_tokens=10).check("speech-stops")
    assert (
        capped is not None and capped.passed is None and "within the 10 tokens = 0.20 s of audio run" in capped.detail
    )
    assert "the config allows the budget of 30 tokens" in capped.detail and "inconclusive" in capped.detail


def test_end_of_speech_outside_the_stop_ids_is_demonstrated_and_its_fix_proven(tmp_path) -> None:
    """The model ends its speech, generate() goes on (eos is <|eot_id|> only): SRV002 predicts it, speech-stops
    shows it, and the fix (end-of-speech id added to eos_token_id) is proven by the same check passing after."""
    chain = {SPEECH_START: audio(5), audio(5): audio(9), audio(9): SPEECH_END, SPEECH_END: audio(7), audio(7): audio(8)}
    chain[audio(8)] = audio(7)
    model = build_speech(tmp_path / "m", chain, {**LLASA, "eos_token_id": EOT_ID, "max_new_tokens": 30})
    check = smoke.run_smoke(model).check("speech-stops")
    assert check is not None and check.passed is False
    assert f"emitted '<|SPEECH_GENERATION_END|>' ({SPEECH_END}) after 2 audio tokens" in check.detail
    assert f"generate() went on for 27 more tokens: generate() stops on [{EOT_ID}]" in check.detail
    code, out = run_main("fix", model, "--apply", "--prove", "--select", "SRV002")
    assert code == 0, out
    assert "speech-stops       FAIL   pass" in out and ": proven (speech-stops: FAIL before, pass after)" in out
    saved = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    assert saved["eos_token_id"] == [EOT_ID, SPEECH_END]  # config.json's eos (the pad here) is not merged in


def test_a_check_failing_before_and_after_does_not_undo_an_unrelated_proven_fix(tmp_path) -> None:
    chain = {SPEECH_START: audio(5), audio(5): audio(6), audio(6): audio(5)}
    model = build_speech(tmp_path / "m", chain, {**LLASA, "eos_token_id": [SPEECH_END, EOT_ID], "max_new_tokens": 30})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "attn_implementation": "eager"}))
    code, out = run_main("fix", model, "--apply", "--prove", "--select", "ATT002")
    assert code == 1 and "rolled back" not in out, out  # speech-stops fails before and after: not the fix's doing
    assert "speech-stops       FAIL   FAIL" in out and ": proven (attention: FAIL before, pass after)" in out
    assert json.loads((tmp_path / "m" / "config.json").read_text())["attn_implementation"] == "sdpa"


def test_an_unknown_family_is_checked_by_its_own_start_token_and_numbered_tokens(tmp_path) -> None:
    from _make import byte_level_tokenizer

    specials = ["<|end_of_text|>", "<|eot_id|>", "<|speech_start|>", "<|speech_end|>"]
    tok = byte_level_tokenizer(specials, audio_codes=32, code_format="<|a_{}|>")
    eot, start, end = (tok.token_to_id(s) for s in specials[1:])
    code = [tok.token_to_id(f"<|a_{i}|>") for i in (3, 4)]
    chain = {start: code[0], code[0]: code[1], code[1]: end}
    model = build_speech(tmp_path / "m", chain, {**LLASA, "eos_token_id": [end, eot], "max_new_tokens": 50}, tok=tok)
    report = smoke.run_smoke(model)
    tokens, stops = report.check("speech-tokens"), report.check("speech-stops")
    assert tokens is not None and stops is not None
    assert tokens.passed is True and tokens.detail.startswith("unknown family: after <|speech_start|>")
    assert "all 2 generated tokens are audio tokens <|a_N|> (32 ids" in tokens.detail
    assert stops.passed is True and "stopped by '<|speech_end|>'" in stops.detail and "s of audio" not in stops.detail


def _wordlevel_model(path, model_type: str) -> str:
    """A phoneme WordLevel tokenizer saved by transformers 5 (TokenizersBackend) beside a tiny random model."""
    from _make import wordlevel_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = PreTrainedTokenizerFast(
        tokenizer_object=wordlevel_tokenizer(["<|endoftext|>", "<|im_end|>"], audio_codes=16),
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
    )
    tok.save_pretrained(str(path))
    config_class, model_class = (
        (Qwen2Config, Qwen2ForCausalLM) if model_type == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    )
    torch.manual_seed(0)
    cfg = config_class(
        vocab_size=64,
        **TINY_SHAPE,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model_class(cfg).save_pretrained(str(path))
    return str(path)


def test_a_tokenizer_rebuilt_by_model_type_fails_load_and_every_other_check_still_runs(tmp_path, capsys) -> None:
    model = _wordlevel_model(tmp_path / "qwen", "qwen2")
    report = smoke.run_smoke(model)
    load = report.check("load")
    assert load is not None and load.passed is False
    assert "AutoTokenizer built Qwen2Tokenizer (model_type 'qwen2'), which encodes 'Hello there, this is a test.'" in (
        load.detail
    )
    assert "the saved tokenizer.json (WordLevel) encodes it to [0, 0, 0, 0, 0, 0] (6 ids)" in load.detail
    for check in report.checks:
        assert "probe failed inside" not in check.detail and "Traceback" not in check.detail, check
    for name in ("highest-id", "batch-consistency", "eos-stops", "attention"):
        assert report.check(name) is not None and report.check(name).passed is not False, report.check(name)
    code, out = run_main("smoke", model)
    assert code == 1 and "demonstrates TOK008 at" in out and "(load failed)" in out
    twin = smoke.run_smoke(_wordlevel_model(tmp_path / "llama", "llama"))
    assert twin.check("load").passed is True and "tokenizer TokenizersBackend" in twin.check("load").detail
