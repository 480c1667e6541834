"""Beyond Hugging Face layouts: coqui XTTS-v2, F5-TTS and GGUF."""

from __future__ import annotations

import json
import os
import shutil

from conftest import FIXTURES, run_main

from ttsdoctor.artifacts.gguf_file import load_gguf
from ttsdoctor.artifacts.tokenizer import load_tokenizer_bundle


def _findings(path: str) -> list[dict]:
    return json.loads(run_main("check", path, "--format", "json")[1])["findings"]


def test_xtts_vocab_json_is_a_tokenizers_file_and_all_three_tensors_are_checked() -> None:
    case = os.path.join(FIXTURES, "VOC001/bad/xtts-new-language-vocab")
    bundle = load_tokenizer_bundle(case)
    assert bundle.file is not None and bundle.file.kind == "BPE" and bundle.file.id_count == 7767
    voc = [f for f in _findings(case) if f["code"] == "VOC001"]
    pointers = sorted(f["pointer"] for f in voc)
    assert pointers == [
        "/model.gpt.text_embedding.weight",
        "/model.gpt.text_head.bias",
        "/model.gpt.text_head.weight",
        "/model_args/gpt_number_text_tokens",
    ]
    assert all("7767" in f["message"] and "6681" in f["message"] for f in voc)
    payload = json.loads(run_main("check", case, "--format", "json")[1])
    assert payload["families"][0]["family"] == "XTTS"


def test_xtts_audio_tokens_code_defaults_against_released_checkpoint() -> None:
    findings = [
        f
        for f in _findings(os.path.join(FIXTURES, "COD004/bad/xtts-code-default-audio-tokens"))
        if f["code"] == "COD004"
    ]
    assert len(findings) == 3 and all("8194" in f["message"] and "1026" in f["message"] for f in findings)
    assert "DVAE of 1024 codes" in findings[0]["message"]


def test_f5_known_vocab_and_duplicates() -> None:
    emilia = _findings(os.path.join(FIXTURES, "VOC007/bad/f5-checkpoint-from-emilia-vocab"))
    assert any("Emilia pinyin vocab.txt (2545 symbols)" in f["message"] for f in emilia)
    broken = {
        f["line"]: f["message"]
        for f in _findings(os.path.join(FIXTURES, "VOC007/bad/f5-duplicates-and-space"))
        if f["code"] == "VOC007"
    }
    assert "space symbol is at line 20" in broken[1]
    assert "repeats 1 symbol(s)" in broken[41] and "ids follow line numbers" in broken[41]
    yaml_case = _findings(os.path.join(FIXTURES, "VOC007/bad/f5-yaml-custom-tokenizer/F5TTS_Small_train.yaml"))
    assert [f["code"] for f in yaml_case] == ["VOC007"] and "259" in yaml_case[0]["message"]


def test_f5_vocab_without_space_and_wordpiece_vocab(tmp_path) -> None:
    shutil.copytree(os.path.join(FIXTURES, "VOC007/good/f5-custom-vocab"), tmp_path / "f5")
    vocab = tmp_path / "f5" / "vocab.txt"
    vocab.write_text(vocab.read_text().replace(" \n", "", 1))
    (space,) = [f for f in _findings(str(tmp_path / "f5")) if f["code"] == "VOC007" and f["line"] == 1]
    assert "has no space symbol, which must be its first line" in space["message"]
    # a BERT WordPiece vocab.txt is not a symbol list: no space at line 1 is right for it
    bert = os.path.join(FIXTURES, "VOC007/good/bert-wordpiece-g2p")
    assert not [f for f in _findings(bert) if f["code"] == "VOC007"]
    assert load_tokenizer_bundle(bert).symbols is None


def test_gguf_header_only_view() -> None:
    path = os.path.join(FIXTURES, "TOK001/bad/gguf-pad-is-eos/outetts-0.2-500m-q8_0.gguf")
    model = load_gguf(path)
    assert not model.errors
    assert model.tokenizer is not None and model.tokenizer.file is not None
    assert model.tokenizer.file.token(96) == "<|im_end|>" and 96 in model.tokenizer.file.special
    assert model.tensors["token_embd.weight"].shape == (160, 8)  # rows first, as in the other formats
    assert {d.role: d.ids for d in model.special_decls} == {"pad": (96,), "eos": (96,)}
    tok001 = [f for f in _findings(path) if f["code"] == "TOK001"]
    assert len(tok001) == 1 and "GGUF metadata" in tok001[0]["message"] and tok001[0]["fix"] is None


def test_gguf_rows_and_broken_file(tmp_path) -> None:
    findings = _findings(os.path.join(FIXTURES, "VOC001/bad/gguf-tokens-above-embedding"))
    assert {f["pointer"] for f in findings if f["code"] == "VOC001"} == {"/token_embd.weight", "/output.weight"}
    broken = tmp_path / "model.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    code, out = run_main("check", str(broken), "--format", "json")
    assert code == 2
    finding = json.loads(out)["findings"][0]
    assert (
        finding["code"] == "ART001"
        and "the metadata count is 18446744073709551615 keys, above the gguf_kv limit" in finding["message"]
    )
    broken.write_bytes(b"GGML\x03\x00\x00\x00" + b"\0" * 40)
    code, out = run_main("check", str(broken), "--format", "json")
    assert code == 2 and "not a GGUF file: starts with b'GGML'" in json.loads(out)["findings"][0]["message"]
