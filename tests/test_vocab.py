"""Vocabulary, embedding and freezing rules beyond the fixture goldens."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
from conftest import ROOT, run_main
from safetensors.numpy import save_file

from ttsdoctor.artifacts.embeddings import text_embedding, text_head
from ttsdoctor.artifacts.row_stats import read_rows
from ttsdoctor.artifacts.tensors import TensorInfo
from ttsdoctor.artifacts.weights import read_safetensors_header

AMHARIC = "fixtures/VOC001/bad/chatterbox-amharic-887"


def _findings(*paths: str) -> list[dict]:
    return json.loads(run_main("check", *paths, "--format", "json")[1])["findings"]


def test_amharic_report_names_all_three_numbers() -> None:
    findings = [f for f in _findings(AMHARIC) if f["code"].startswith("VOC")]
    text = " ".join(f["message"] for f in findings)
    for number in ("887", "2535", "3000"):
        assert number in text, number
    voc001 = next(f for f in findings if f["code"] == "VOC001")
    assert voc001["path"].endswith("config/training_config.yaml") and voc001["line"] == 8
    assert voc001["evidence"]["tokenizer"].endswith("models/tokenizer/Am_tokenizer_merged.json")
    assert voc001["fix"] == {"title": "Set n_vocab to 2535", "applicability": "safe"}
    voc002 = next(f for f in findings if f["code"] == "VOC002")
    assert "chatterbox_extended.pt" in voc002["message"] and "[3000, 1024]" in voc002["message"]


def test_config_paths_resolve_from_project_root_not_cwd(tmp_path) -> None:
    shutil.copytree(os.path.join(ROOT, AMHARIC), tmp_path / "proj")
    os.chdir(tmp_path)
    try:
        findings = _findings("proj/config/training_config.yaml")
    finally:
        os.chdir(ROOT)
    assert {f["code"] for f in findings} >= {"VOC001", "VOC002", "VOC004"}
    assert all(not f["path"].startswith("/") for f in findings)


def test_custom_tensor_names_pick_text_not_speech() -> None:
    tensors = {
        name: TensorInfo(name, "F16", shape, "x")
        for name, shape in [
            ("t3.speech_emb.weight", (8194, 16)),
            ("t3.text_emb.weight", (704, 16)),
            ("t3.speech_head.weight", (8194, 16)),
            ("t3.text_head.weight", (704, 16)),
            ("t3.text_pos_emb.emb.weight", (2050, 16)),
        ]
    }
    assert text_embedding(tensors).name == "t3.text_emb.weight"
    assert text_head(tensors).name == "t3.text_head.weight"


def test_row_reads_for_each_dtype(tmp_path) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((50, 6)).astype(np.float32)
    for dtype in ("float32", "float16"):
        path = tmp_path / f"{dtype}.safetensors"
        save_file({"embed_tokens.weight": values.astype(dtype)}, str(path))
        info = read_safetensors_header(str(path)).tensors["embed_tokens.weight"]
        np.testing.assert_allclose(read_rows(info, [3, 49]), values.astype(dtype)[[3, 49]].astype(np.float32))
    # bf16: the fixture stores truncated float32 bits; reading gives exactly the truncated values.
    info = read_safetensors_header("fixtures/VOC006/good/bf16-trained-rows/model.safetensors").tensors[
        "model.embed_tokens.weight"
    ]
    assert info.dtype == "BF16"
    rows = read_rows(info, [0, 1])
    assert rows.dtype == np.float32 and np.all(np.isfinite(rows)) and 0.005 < float(np.abs(rows).mean()) < 0.1


def test_sharded_model_dir_is_checked_like_one_file(tmp_path) -> None:
    src = os.path.join(ROOT, "fixtures/VOC001/bad/tokenizer-above-rows")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(os.path.join(src, name), tmp_path / name)
    save_file({"model.embed_tokens.weight": np.zeros((320, 8), "float16")}, str(tmp_path / "model-00001.safetensors"))
    save_file({"lm_head.weight": np.zeros((320, 8), "float16")}, str(tmp_path / "model-00002.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    "model.embed_tokens.weight": "model-00001.safetensors",
                    "lm_head.weight": "model-00002.safetensors",
                }
            }
        )
    )
    codes = [f["code"] for f in _findings(str(tmp_path))]
    assert codes.count("VOC001") == 3  # vocab_size, embedding shard, head shard


def test_peft_trainable_token_indices_and_json_configs(tmp_path) -> None:
    shutil.copytree(os.path.join(ROOT, "fixtures/FRZ001/good/freeze-at-base"), tmp_path / "p")
    (tmp_path / "p" / "config" / "lora.json").write_text(
        json.dumps({"tokenizer_path": "models/tokenizer", "trainable_token_indices": {"embed_tokens": [2454, 2600]}})
    )
    findings = _findings(str(tmp_path / "p" / "config" / "lora.json"))
    frz = [f for f in findings if f["code"] == "FRZ001"]
    assert (
        len(frz) == 1 and "2600" in frz[0]["message"] and frz[0]["pointer"] == "/trainable_token_indices/embed_tokens/1"
    )


def test_a_vocab_txt_of_another_field_and_a_json_named_tokenizer_are_not_judged(tmp_path) -> None:
    # SoSongzhi/fuzzy2solid_t5: mass-spectrometry token lists saved as vocab.txt (no space line, repeated
    # masses), a JSON vocabulary saved as vocab.txt, and an empty `{}` fuzzy_tokenizer.json beside a BERT
    # tokenizer_config.json: none is F5-TTS's symbol list or a tokenizers-library file
    species = tmp_path / "datasets" / "raw" / "H.-sapiens"
    species.mkdir(parents=True)
    (species / "vocab.txt").write_text("[171.06439]\n[114.04293]\n[171.06439]\n")
    (species / "gt_seqs.txt").write_text("PEPTIDE\n")
    (tmp_path / "datasets" / "tokenizer").mkdir()
    (tmp_path / "datasets" / "tokenizer" / "vocab.txt").write_text('{\n  "[UNK]": 0,\n  "PAD": 1\n}\n')
    (tmp_path / "fuzzy_tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizerFast", "pad_token": "[PAD]"}')
    assert [(f["code"], f["path"]) for f in _findings(str(tmp_path)) if f["severity"] != "info"] == []
    # the same list in a prepared F5-TTS dataset (prepare_csv_wavs.py writes raw.arrow and duration.json) is one
    (species / "duration.json").write_text('{"duration": [1.0]}')
    found = [f["message"] for f in _findings(str(tmp_path)) if f["code"] == "VOC007"]
    assert len(found) == 2 and "has no space symbol" in found[0] and "repeats 1 symbol(s)" in found[1]


def test_a_ctc_model_is_judged_on_pad_and_unk_only(tmp_path) -> None:
    # wav2vec2 fine-tunes (the HF CTC recipe): config.json keeps Wav2Vec2Config's bos 1 / eos 2 (ordinary letters
    # here) and Wav2Vec2CTCTokenizer appends <s> 29 and </s> 30 past vocab_size 29; CTC never emits either
    good = os.path.join(ROOT, "fixtures/TOK004/good/wav2vec2-ctc-unused-bos-eos")
    assert [f for f in _findings(good) if f["severity"] != "info"] == []
    model = tmp_path / "wav2vec2"
    shutil.copytree(good, model)
    config = json.loads((model / "config.json").read_text())
    config["pad_token_id"] = 31  # the blank past the CTC head: a real fault
    (model / "config.json").write_text(json.dumps(config, indent=2))
    found = [(f["code"], f["pointer"]) for f in _findings(str(model)) if f["severity"] == "error"]
    assert ("TOK003", "/pad_token_id") in found and all(p == "/pad_token_id" for _, p in found), found
