"""GEN / ATT / POS rules, checked against what the installed transformers actually does."""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest
import transformers
from conftest import ROOT, run_main

from ttsdoctor import engine, environment
from ttsdoctor.checks import attention
from ttsdoctor.discover import discover
from ttsdoctor.registry import ALL_RULES


def _findings(*paths: str) -> list[dict]:
    return json.loads(run_main("check", *paths, "--format", "json")[1])["findings"]


def _transformers_rejects(data: dict) -> bool:
    from transformers import GenerationConfig
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    try:
        config = GenerationConfig(**data)
        config.validate(strict=True)
        if config.do_sample:
            if config.temperature is not None and config.temperature != 1.0:
                TemperatureLogitsWarper(config.temperature)
            if config.top_k is not None and config.top_k != 0:
                TopKLogitsWarper(config.top_k)
        if config.top_p is not None and config.top_p != 1.0:
            TopPLogitsWarper(config.top_p)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("case", sorted(glob.glob(os.path.join(ROOT, "fixtures/GEN004/*/*/generation_config.json"))))
def test_gen004_agrees_with_transformers(case: str) -> None:
    with open(case, encoding="utf-8") as fh:
        data = json.load(fh)
    ours = [f for f in _findings(os.path.dirname(case)) if f["code"] == "GEN004"]
    assert bool(ours) == _transformers_rejects(data), (data, ours)


def _tiny_model(path: str) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)


@pytest.mark.slow
def test_gen003_dead_keys_are_really_ignored(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    _tiny_model(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["temperature"] = 0.3
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2))
    (tmp_path / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.7}))
    finding = next(f for f in _findings(str(tmp_path)) if f["code"] == "GEN003")
    assert "ignored" in finding["message"] and "0.7" in finding["message"]
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert model.generation_config.temperature == 0.7


@pytest.mark.slow
def test_gen003_keys_without_generation_config_are_really_used_and_saved(tmp_path) -> None:
    # why they are info: transformers builds the generation config from config.json, and saving keeps them
    from transformers import AutoModelForCausalLM

    _tiny_model(str(tmp_path / "m"))
    os.remove(tmp_path / "m" / "generation_config.json")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "temperature": 0.3, "max_length": 33}))
    found = [f for f in _findings(str(tmp_path / "m")) if f["code"] == "GEN003"]
    assert sorted(f["pointer"] for f in found) == ["/max_length", "/temperature"]
    assert all(f["severity"] == "info" and "save_pretrained moves it there" in f["message"] for f in found)
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"))
    assert (model.generation_config.temperature, model.generation_config.max_length) == (0.3, 33)
    model.save_pretrained(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "generation_config.json").read_text())
    assert (saved["temperature"], saved["max_length"]) == (0.3, 33)


@pytest.mark.slow
def test_tok003_a_decoder_only_bos_past_the_table_breaks_only_promptless_generate() -> None:
    # why TOK003 makes it a warning: with a prompt generate() never embeds the config's bos
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=53, n_embd=16, n_layer=1, n_head=2, n_positions=32, eos_token_id=51, pad_token_id=52)
    assert config.bos_token_id == 50256  # GPT2Config's default, kept by a from-scratch model
    model = GPT2LMHeadModel(config).eval()
    out = model.generate(torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 3, dtype=torch.long), max_new_tokens=2)
    assert out.shape == (1, 5)
    with pytest.raises(IndexError):
        model.generate(max_new_tokens=2)


def test_gen001_dict_really_fails_at_load(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    _tiny_model(str(tmp_path))
    with pytest.raises(AttributeError, match="'dict' object has no attribute 'to_dict'"):
        path = str(tmp_path)  # the bug itself, on purpose:
        AutoModelForCausalLM.from_pretrained(path, generation_config={"max_length": 10})  # ttsdoctor: ignore[GEN001]
    messages = [f["message"] for f in _findings("fixtures/GEN001/bad/generate-and-assign-dict")]
    assert any("'to_dict'" in m for m in messages)


def test_att001_message_follows_installed_version(monkeypatch) -> None:
    monkeypatch.setattr(attention, "transformers_major", lambda: 4)
    assert "27% slower" in attention.output_attentions_effect(False)
    monkeypatch.setattr(attention, "transformers_major", lambda: 5)
    assert "empty attentions with at most a one-time warning" in attention.output_attentions_effect(False)
    assert "silently" in attention.output_attentions_effect(True)
    assert environment.transformers_major() == int(transformers.__version__.split(".")[0])


def test_att001_sdpa_really_returns_no_attentions(tmp_path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    _tiny_model(str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert model.config._attn_implementation == "sdpa"
    out = model(torch.tensor([[1, 2, 3]]), output_attentions=True)  # ttsdoctor: ignore[ATT001]
    assert not out.attentions


def test_att001_loop_and_suppression(tmp_path) -> None:
    shutil.copy(os.path.join(ROOT, "fixtures/ATT001/bad/chatterbox-inference-loop/t3_stream.py"), tmp_path / "a.py")
    findings = [f for f in _findings(str(tmp_path / "a.py")) if f["code"] == "ATT001"]
    assert [f["evidence"]["in_loop"] for f in findings] == [False, True]
    text = (
        (tmp_path / "a.py")
        .read_text()
        .replace(
            "            output_attentions=True,\n",
            "            output_attentions=True,  # ttsdoctor: ignore[ATT001]\n",
        )
    )
    (tmp_path / "a.py").write_text(text)
    findings = [f for f in _findings(str(tmp_path / "a.py")) if f["code"] == "ATT001"]
    assert [f["evidence"]["in_loop"] for f in findings] == [False]


def test_att001_remote_code_loading_is_info_as_its_own_code_picks_the_kernel(tmp_path) -> None:
    # navchetna/AIComps loads IndicTrans2 (remote code, eager only) with output_attentions=True: no kernel changes.
    call = "AutoModelForSeq2SeqLM.from_pretrained(path{}, output_attentions=True)\n"
    for remote, severity in ((", trust_remote_code=True", "info"), ("", "warning")):
        (tmp_path / "a.py").write_text("from transformers import AutoModelForSeq2SeqLM\n" + call.format(remote))
        (found,) = [f for f in _findings(str(tmp_path / "a.py")) if f["code"] == "ATT001"]
        assert found["severity"] == severity, found


def test_gen003_defaults_table_is_the_installed_transformers_defaults() -> None:
    from transformers import GenerationConfig

    from ttsdoctor.checks.generation import GENERATE_DEFAULTS, GENERATION_KEYS

    installed = getattr(GenerationConfig, "_get_default_generation_params", None)  # transformers 5
    defaults = installed() if installed is not None else GenerationConfig().to_dict()
    assert {k: defaults[k] for k in GENERATE_DEFAULTS} == GENERATE_DEFAULTS
    assert set(GENERATE_DEFAULTS) <= set(GENERATION_KEYS)
    unlisted = [k for k in GENERATION_KEYS if k not in GENERATE_DEFAULTS and defaults.get(k) is not None]
    assert not unlisted, unlisted  # every key with a default other than None is in the table


def test_gen003_default_values_in_config_change_nothing(tmp_path) -> None:
    import json

    config = {"model_type": "llama", "max_length": 20, "num_beams": 1, "do_sample": 0, "temperature": 0.4}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_new_tokens": 256}))
    found = [f for f in _findings(str(tmp_path)) if f["code"] == "GEN003"]
    assert [(f["severity"], f["pointer"]) for f in found] == [
        ("info", "/max_length"),  # max_length and num_beams: one finding
        ("warning", "/do_sample"),  # 0 is not false: not the default
        ("warning", "/temperature"),
    ], found
    assert found[0]["evidence"]["keys"] == ["max_length", "num_beams"]


def test_att001_att002_an_eager_model_that_returns_its_attentions_is_info(tmp_path) -> None:
    fixture = os.path.join(ROOT, "fixtures/ATT002/good/eager-model-returns-attentions/model_service.py")
    text = open(fixture, encoding="utf-8").read()

    def severities(text: str) -> dict[str, str]:
        (tmp_path / "a.py").write_text(text)
        return {f["code"]: f["severity"] for f in _findings(str(tmp_path / "a.py")) if f["code"].startswith("ATT")}

    assert severities(text) == {"ATT001": "info", "ATT002": "info"}
    # without return_dict_in_generate the weights are computed and dropped: both warn again
    assert severities(text.replace("return_dict_in_generate=True", "use_cache=True")) == {
        "ATT001": "warning",
        "ATT002": "warning",
    }
    # another model than the eager one asks for them: the sdpa model returns empty attentions
    other = text.replace("return self.pytorch_model.generate(", "return self.onnx_model.generate(")
    assert severities(other) == {"ATT001": "warning", "ATT002": "warning"}


def test_pos001_learned_table_is_error_rope_is_warning() -> None:
    t3 = [f for f in _findings("fixtures/POS001/bad/t3-text-beyond-position-table") if f["code"] == "POS001"]
    assert [f["severity"] for f in t3] == ["error"] and "2050 rows" in t3[0]["message"]
    rope = [f for f in _findings("fixtures/POS001/bad/max-length-above-rope-positions") if f["code"] == "POS001"]
    assert [f["severity"] for f in rope] == ["warning"]


def test_a_dict_forwarded_to_a_class_of_another_library_is_not_reported_by_the_literal_either(tmp_path) -> None:
    """GEN001 judges `from_pretrained(**{...})` by its receiver; the dict under 'generation_config' it forwards is
    not then reported again as a literal forwarded to some from_pretrained."""
    script = tmp_path / "app.py"
    script.write_text(
        "from vibevoice.modular.modeling_vibevoice_streaming_inference import (\n"
        "    VibeVoiceStreamingForConditionalGenerationInference as Model,\n)\n"
        'model = Model.from_pretrained("x", **{"generation_config": {"do_sample": False}})\n'
    )
    assert [f for f in engine.run(ALL_RULES, discover([str(script)])).findings if f.rule_id == "GEN001"] == []


def test_a_dict_generation_config_for_a_receiver_not_traced_is_a_warning(tmp_path) -> None:
    """VibeVoice forks call their own model's generate(generation_config={...}) through a handle ttsdoctor cannot
    follow (`patcher.model.model`): that generate() may take a dict, so a warning with an unsafe fix, not an error.
    Traced to transformers it stays an error."""
    script = tmp_path / "node.py"

    def gen001() -> list[tuple[str, str | None]]:
        found = [f for f in engine.run(ALL_RULES, discover([str(script)])).findings if f.rule_id == "GEN001"]
        return [(f.severity.value, f.fix.applicability.value if f.fix else None) for f in found]

    script.write_text(
        "def run(patcher, inputs):\n"
        "    model = patcher.model.model\n"
        "    return model.generate(**inputs, generation_config={'do_sample': False})\n"
    )
    assert gen001() == [("warning", "unsafe")]
    script.write_text(
        "from transformers import AutoModelForCausalLM\n"
        "model = AutoModelForCausalLM.from_pretrained('m')\n"
        "out = model.generate(input_ids=x, attention_mask=m, generation_config={'do_sample': False})\n"
    )
    assert [severity for severity, _fix in gen001()] == ["error"]
