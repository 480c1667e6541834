"""`fix` on pickle checkpoints (.pth / .bin): resized through torch only after the inert reader vouched for them."""

from __future__ import annotations

import argparse
import json
import os
import shutil

import pytest
import torch
from conftest import ROOT, run_main

from ttsdoctor import edits, engine
from ttsdoctor.discover import discover
from ttsdoctor.finding import ResizeTensor, Severity
from ttsdoctor.registry import ALL_RULES

XTTS = os.path.join(ROOT, "fixtures/VOC001/bad/xtts-new-language-vocab")  # vocab.json 7767 ids, 6681 rows


def _xtts(tmp_path, extra: dict | None = None, tied: bool = False, legacy: bool = False) -> tuple[str, dict]:
    """The XTTS fixture with real random weights (hidden 16) in model.pth."""
    model = str(tmp_path / "xtts")
    shutil.copytree(XTTS, model)
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(6681, 16, generator=gen).to(torch.float16)
    state = {
        "model": {
            "gpt.text_embedding.weight": emb,
            "gpt.text_head.weight": emb if tied else torch.randn(6681, 16, generator=gen).to(torch.float16),
            "gpt.text_head.bias": torch.randn(6681, generator=gen).to(torch.float16),
            "gpt.mel_embedding.weight": torch.randn(1026, 16, generator=gen),
            "gpt.mel_head.weight": torch.randn(1026, 16, generator=gen),
            "gpt.mel_head.bias": torch.randn(1026, generator=gen),
        },
        "step": 1200,
        "config": {"lr": 5e-6, "languages": ["en", "am"]},
        **(extra or {}),
    }
    torch.save(state, os.path.join(model, "model.pth"), _use_new_zipfile_serialization=not legacy)
    return model, state


def _voc001(model: str) -> list:
    return [f for f in engine.run(ALL_RULES, discover([model])).findings if f.rule_id == "VOC001"]


def test_xtts_pth_grows_text_embedding_head_and_bias_keeping_everything_else(tmp_path) -> None:
    model, state = _xtts(tmp_path)
    code, out = run_main("fix", model, "--unsafe-fixes")
    assert "model.gpt.text_embedding.weight [6681, 16] -> [7767, 16] (1086 new rows = mean of rows 0..6680)" in out
    assert "model.gpt.text_head.bias [6681] -> [7767]" in out
    code, out = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "VOC001")
    assert code == 0, out
    fixed = torch.load(os.path.join(model, "model.pth"), weights_only=True)
    for name in ("gpt.text_embedding.weight", "gpt.text_head.weight", "gpt.text_head.bias"):
        old, new = state["model"][name], fixed["model"][name]
        assert new.shape[0] == 7767 and new.shape[1:] == old.shape[1:] and new.dtype == old.dtype
        assert torch.equal(new[:6681], old)  # trained rows kept bit for bit
        mean = old.to(torch.float64).mean(dim=0).to(torch.float32).to(old.dtype)
        assert torch.equal(new[6681:], mean.expand_as(new[6681:]))
    for name in ("gpt.mel_embedding.weight", "gpt.mel_head.weight", "gpt.mel_head.bias"):
        assert torch.equal(fixed["model"][name], state["model"][name])
    assert fixed["step"] == 1200 and fixed["config"] == state["config"]
    config = json.loads(open(os.path.join(model, "config.json")).read())
    assert config["model_args"]["gpt_number_text_tokens"] == 7767
    assert _voc001(model) == []
    code, out = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "VOC001")
    assert "Applied 0 fixes" in out


def test_tied_embedding_and_head_stay_one_tensor(tmp_path) -> None:
    model, _ = _xtts(tmp_path, tied=True)
    code, out = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "VOC001")
    assert code == 0, out
    fixed = torch.load(os.path.join(model, "model.pth"), weights_only=True)["model"]
    emb, head = fixed["gpt.text_embedding.weight"], fixed["gpt.text_head.weight"]
    assert emb.shape == (7767, 16) and emb.untyped_storage().data_ptr() == head.untyped_storage().data_ptr()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda tmp: _xtts(tmp, extra={"args": argparse.Namespace(lr=1e-4)}), id="pickled-namespace"),
        pytest.param(lambda tmp: _xtts(tmp, legacy=True), id="legacy-pickle"),
    ],
)
def test_checkpoint_torch_cannot_load_safely_gets_no_fix_and_is_never_loaded(tmp_path, monkeypatch, make) -> None:
    model, _ = make(tmp_path)
    path = os.path.join(model, "model.pth")
    before = open(path, "rb").read()
    findings = _voc001(model)
    tensor_findings = [f for f in findings if f.location.path == path]
    assert tensor_findings and all(  # no fix, but the reason in the finding
        f.fix is not None and f.fix.applicability.value == "display-only" for f in tensor_findings
    )
    assert all("argparse.Namespace" in f.fix.title or "legacy" in f.fix.title for f in tensor_findings)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be called on this checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    resize = [ResizeTensor(path, "model.gpt.text_embedding.weight", 7767, 6681)]
    with pytest.raises(edits.EditError, match=r"argparse\.Namespace|legacy pickle"):
        edits.resize_plan(path, resize)
    with pytest.raises(edits.EditError):
        edits.resize_writer(path, resize)
    code, _ = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "VOC001")
    assert code == 1
    assert open(path, "rb").read() == before


def test_without_torch_the_fix_is_skipped_with_the_reason(tmp_path, monkeypatch) -> None:
    import importlib.util

    model, _ = _xtts(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    path = os.path.join(model, "model.pth")
    with pytest.raises(edits.EditError, match=r"needs torch: pip install 'ttsdoctor\[smoke\]'"):
        edits.resize_plan(path, [ResizeTensor(path, "model.gpt.text_embedding.weight", 7767, 6681)])


def test_pad_fix_grows_a_pytorch_model_bin(tmp_path) -> None:
    """TOK001's add-a-pad-token fix resizes a HF pickle checkpoint like a safetensors one."""
    from safetensors.torch import load_file

    src = os.path.join(ROOT, "fixtures/TOK001/bad/qwen2-pad-in-eos-list")
    model = str(tmp_path / "m")
    shutil.copytree(src, model)
    weights = load_file(os.path.join(model, "model.safetensors"))
    ids = 339  # no free padding row: the new <|pad|> needs row 339
    state = {
        "model.embed_tokens.weight": weights["model.embed_tokens.weight"][:ids].clone(),
        "lm_head.weight": weights["lm_head.weight"][:ids].clone(),
        "model.norm.weight": weights["model.norm.weight"],
    }
    os.remove(os.path.join(model, "model.safetensors"))
    torch.save(state, os.path.join(model, "pytorch_model.bin"))
    config = json.loads(open(os.path.join(model, "config.json")).read())
    config["vocab_size"] = ids
    with open(os.path.join(model, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    code, out = run_main("fix", model, "--apply", "--unsafe-fixes", "--select", "TOK001")
    assert code in (0, 1), out
    fixed = torch.load(os.path.join(model, "pytorch_model.bin"), weights_only=True)
    assert fixed["model.embed_tokens.weight"].shape[0] == 340 and fixed["lm_head.weight"].shape[0] == 340
    assert torch.equal(fixed["model.embed_tokens.weight"][:ids], state["model.embed_tokens.weight"])
    result = engine.run(ALL_RULES, discover([model]))
    assert not [f for f in result.findings if f.severity is Severity.ERROR]
