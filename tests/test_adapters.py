"""ADP rules on adapters peft itself writes, and the failures their findings promise, shown by loading them."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from conftest import FIXTURES

sys.path.insert(0, FIXTURES)
from _make import ADP_AUDIO, ADP_BASE_SPECIALS, ADP_TOKENIZER_CONFIG, byte_level_tokenizer, write_tokenizer

from ttsdoctor import engine
from ttsdoctor.discover import discover
from ttsdoctor.finding import Severity
from ttsdoctor.registry import ALL_RULES

BASE_ROWS = byte_level_tokenizer(ADP_BASE_SPECIALS).get_vocab_size()


def _findings(path: str, prefix: str = "ADP") -> list:
    return [f for f in engine.run(ALL_RULES, discover([path])).findings if f.rule_id.startswith(prefix)]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("peft") / "base"
    config = LlamaConfig(vocab_size=BASE_ROWS, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(str(path))
    write_tokenizer(str(path), byte_level_tokenizer(ADP_BASE_SPECIALS), ADP_TOKENIZER_CONFIG)
    return str(path)


def _adapter(base: str, out: str, tokens: int, train: bool = True, multiple: int | None = None, **lora) -> str:
    """Add `tokens` speech tokens, resize, wrap with peft's LoraConfig(**lora), "train" (LoRA B and the saved
    copies of modules_to_save moved off their initial values), save with peft's save_pretrained."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    model = LlamaForCausalLM.from_pretrained(base)
    tok = byte_level_tokenizer(ADP_BASE_SPECIALS, tokens, code_format="<custom_token_{}>")
    if tokens:
        model.resize_token_embeddings(tok.get_vocab_size(), pad_to_multiple_of=multiple)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **lora))
    if train:
        with torch.no_grad():
            for param in peft_model.parameters():
                if param.requires_grad:
                    param.add_(torch.randn_like(param) * 0.05)
    peft_model.save_pretrained(out)
    write_tokenizer(out, tok, ADP_TOKENIZER_CONFIG)
    return out


@pytest.mark.slow
def test_peft_adapters_give_the_findings_of_the_fixtures(base, tmp_path) -> None:
    # the fixture written in peft's format and peft's own output give the same rule, severity and counts
    resized = _adapter(base, str(tmp_path / "resized"), ADP_AUDIO)
    [finding] = _findings(resized)
    assert (finding.rule_id, finding.severity) == ("ADP001", Severity.ERROR)
    assert finding.evidence["untrained_ids"] == ADP_AUDIO and finding.evidence["base_rows"] == BASE_ROWS
    fixture = os.path.join(FIXTURES, "ADP001", "bad", "speech-tokens-resized-not-trained")
    [expected] = _findings(fixture)
    assert {k: expected.evidence[k] for k in ("untrained_ids", "base_rows", "tokenizer_rows")} == {
        k: finding.evidence[k] for k in ("untrained_ids", "base_rows", "tokenizer_rows")
    }
    partial = _adapter(base, str(tmp_path / "tti"), ADP_AUDIO, trainable_token_indices=[BASE_ROWS, BASE_ROWS + 1])
    [finding] = _findings(partial)
    assert finding.rule_id == "ADP001" and finding.evidence["untrained_ids"] == ADP_AUDIO - 2
    saved = _adapter(base, str(tmp_path / "mts"), ADP_AUDIO, modules_to_save=["embed_tokens", "lm_head"])
    assert _findings(saved) == []
    no_tokens = _adapter(base, str(tmp_path / "plain"), 0)
    assert _findings(no_tokens) == []


@pytest.mark.slow
def test_untrained_adapter_is_reported_and_really_changes_nothing(base, tmp_path) -> None:
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    adapter = _adapter(base, str(tmp_path / "untrained"), 0, train=False)
    [finding] = _findings(adapter)
    assert (finding.rule_id, finding.severity, finding.evidence["zero_matrices"]) == ("ADP003", Severity.ERROR, 2)
    ids = torch.tensor([[1, 2, 3, 4]])
    plain = LlamaForCausalLM.from_pretrained(base)
    with torch.no_grad():
        expected = plain(ids).logits
        got = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter)(ids).logits
    assert torch.equal(expected, got)  # the promise of the finding: exactly the base model


@pytest.mark.slow
def test_resized_to_a_multiple_fails_to_load_as_the_finding_says(base, tmp_path) -> None:
    from peft import AutoPeftModelForCausalLM

    adapter = _adapter(base, str(tmp_path / "multiple"), 10, multiple=64, modules_to_save=["embed_tokens", "lm_head"])
    with open(os.path.join(adapter, "adapter_config.json")) as fh:
        assert json.load(fh)["base_model_name_or_path"] == base
    [finding] = _findings(adapter)
    assert finding.rule_id == "ADP004" and finding.evidence == {
        "adapter_rows": -(-(BASE_ROWS + 10) // 64) * 64,
        "base_rows": BASE_ROWS,
        "tokenizer_rows": BASE_ROWS + 10,
    }
    with pytest.raises(RuntimeError, match="size mismatch"):
        AutoPeftModelForCausalLM.from_pretrained(adapter)


@pytest.mark.slow
def test_quantization_config_on_16_bit_weights_refuses_to_load(base, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    merged = tmp_path / "merged"
    shutil.copytree(base, merged)
    config = json.loads((merged / "config.json").read_text())
    config["quantization_config"] = {"load_in_4bit": True, "quant_method": "bitsandbytes", "bnb_4bit_quant_type": "nf4"}
    (merged / "config.json").write_text(json.dumps(config))
    [finding] = _findings(str(merged))
    assert finding.rule_id == "ADP002" and finding.evidence["bits"] == "4-bit"
    with pytest.raises(ImportError, match="bitsandbytes"):  # bitsandbytes is not installed here
        AutoModelForCausalLM.from_pretrained(str(merged))


def test_base_found_in_the_hub_cache_and_never_downloaded(tmp_path, monkeypatch) -> None:
    from ttsdoctor.artifacts.adapter import find_local_model

    snapshot = tmp_path / "hub" / "models--org--llama" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--llama" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--llama" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_local_model(str(tmp_path), "org/llama", None) == str(snapshot)
    assert find_local_model(str(tmp_path), "org/other", None) is None
    assert find_local_model(str(tmp_path), "org/llama", "v2") is None  # a revision not in the cache


SCRIPT = """from peft import LoraConfig
tokenizer.add_tokens(["<speech_0>", "<speech_1>"])
model.resize_token_embeddings(len(tokenizer))
{extra}
config = LoraConfig({args})
"""


@pytest.mark.parametrize(
    ("args", "extra", "reported"),
    [
        ('r=8, target_modules=["q_proj", "v_proj"]', "", True),
        ("r=8", "", True),  # PEFT's default targets: attention projections only
        ('r=8, target_modules="all-linear"', "", True),  # all-linear leaves out embeddings and the head
        ('r=8, target_modules=["q_proj", "v_proj"], modules_to_save=["embed_tokens", "lm_head"]', "", False),
        ('r=8, target_modules=["q_proj", "embed_tokens"]', "", False),
        ('r=8, target_modules=["q_proj"], trainable_token_indices=new_ids', "", False),
        ("r=8, target_modules=TARGETS", "", False),  # computed elsewhere: cannot be told
        ('r=8, target_modules=["q_proj"], **extra_args', "", False),
        ('r=8, target_modules=["q_proj"]', "model.get_input_embeddings().weight.requires_grad_(True)", False),
    ],
)
def test_lora_script_rows(tmp_path, args: str, extra: str, reported: bool) -> None:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.format(args=args, extra=extra))
    found = _findings(str(path))
    assert [f.rule_id for f in found] == (["ADP001"] if reported else [])
    if reported:
        assert found[0].severity == Severity.WARNING and found[0].location.line == 5


def test_lora_script_without_added_tokens_is_not_reported(tmp_path) -> None:
    path = tmp_path / "train.py"
    text = SCRIPT.format(args='r=8, target_modules=["q_proj"]', extra="")
    path.write_text(
        text.replace(
            'tokenizer.add_tokens(["<speech_0>", "<speech_1>"])', 'tokenizer.add_special_tokens({"pad_token": "<pad>"})'
        )
    )
    assert _findings(str(path)) == []
