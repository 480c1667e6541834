"""Artifact loaders on real-shaped files: values, positions, and clear errors for bad input."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from ttsdoctor import engine
from ttsdoctor.artifacts.embeddings import text_embedding, text_head
from ttsdoctor.artifacts.errors import AbsentShards, ArtifactError, MissingContent
from ttsdoctor.artifacts.hf_config import load_config, scopes
from ttsdoctor.artifacts.jsonfile import load_json, position_in, positions_in
from ttsdoctor.artifacts.model_dir import load_model_dir
from ttsdoctor.artifacts.pickles import read_pickle_checkpoint
from ttsdoctor.artifacts.source import load_source
from ttsdoctor.artifacts.tokenizer import load_tokenizer_bundle
from ttsdoctor.artifacts.training_config import load_training_config
from ttsdoctor.artifacts.weights import load_sharded_safetensors, read_safetensors_header
from ttsdoctor.discover import discover
from ttsdoctor.registry import ALL_RULES

OUTETTS = "fixtures/TOK001/bad/outetts-pad-eos-0"


def test_key_positions_nested_and_arrays() -> None:
    text = '{\n  "a": 1,\n  "decoder": {\n    "pad_token_id": 5,\n    "ids": [1,\n      2]\n  }\n}\n'
    assert position_in(text, "/a") == (2, 3)
    assert position_in(text, "/decoder/pad_token_id") == (4, 5)
    assert position_in(text, "/decoder/ids/1") == (6, 7)
    assert position_in(text, "/decoder/ids/2") is None and position_in(text, "/b") is None
    assert position_in('{"a~/b": {"x": [0, {"y": 1}]}}', "/a~0~1b/x/1/y") == (1, 21)
    assert position_in('{"a": 1, "a": 2}', "/a") == (1, 2)  # duplicate keys: the first, as before
    assert positions_in('{"a": 1, "a": {"b": 2}}', ["/a", "/a/b"]) == {"/a": (1, 2), "/a/b": None}  # the same
    everything = ["/a", "/decoder", "/decoder/pad_token_id", "/decoder/ids/1", "/decoder/ids/2", "/b", ""]
    assert positions_in(text, everything) == {pointer: position_in(text, pointer) for pointer in everything}


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "file is empty"),
        (b'{"a": ', "invalid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b"[" * 100000 + b"]" * 100000, "invalid JSON"),
    ],
)
def test_json_errors_name_the_problem(tmp_path, content, problem) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ArtifactError) as info:
        load_json(str(path))
    assert problem in info.value.problem and info.value.path == str(path)


def test_json_directory_and_duplicates(tmp_path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ArtifactError, match="is a directory"):
        load_json(str(tmp_path / "config.json"))
    path = tmp_path / "generation_config.json"
    path.write_text('{"top_p": NaN, "a": 1, "a": 2}')
    doc = load_json(str(path))
    assert doc.data["a"] == 2
    assert any("duplicate key 'a': the last value wins (2 over 1)" in p for _, p in doc.problems)
    assert any("NaN" in p for _, p in doc.problems)
    path.write_text('{"b": true, "b": true}')  # Coqui's test configs: the same value twice, read as meant
    assert load_json(str(path)).problems == [("", "repeated key 'b', with the same value both times")]


def test_config_scopes_and_types() -> None:
    doc = load_config("fixtures/TOK001/good/parler-tts-by-design/config.json")
    by_name = {s.name: s for s in scopes(doc)}
    assert by_name["decoder"].get_ids("eos_token_id") == (1024,)
    assert by_name["decoder"].pointer("pad_token_id") == "/decoder/pad_token_id"
    assert doc.position("/decoder/pad_token_id")[0] is not None
    doc = load_config("fixtures/ART002/bad/string-vocab-size/config.json")
    assert scopes(doc)[0].get_int("vocab_size") is None
    assert ("/vocab_size", "vocab_size is a string ('384'), expected an integer") in doc.problems


def test_tokenizer_effective_ids() -> None:
    bundle = load_tokenizer_bundle(OUTETTS)
    tok = bundle.file
    assert tok is not None and tok.kind == "BPE"
    assert tok.token(0) == "!" and tok.token(1) == '"' and tok.token(2) == "#"
    eot = tok.token_id("<|endoftext|>")
    assert eot in tok.special and bundle.is_special(eot) and not bundle.is_special(1)
    assert tok.token_id("<|4099|>") == tok.max_id == 4381 and tok.id_count == tok.max_id + 1
    assert bundle.resolve("<|im_end|>") == eot + 2


def test_tokenizer_declared_ids() -> None:
    tok = load_tokenizer_bundle("fixtures/TOK007/bad/declared-id-ignored").file
    assert tok is not None
    declared = {a.content: a.declared_id for a in tok.declared_added}
    assert declared["<|0|>"] == 500 and tok.token_id("<|0|>") != 500


def test_safetensors_header_and_tensor_roles() -> None:
    wf = read_safetensors_header(os.path.join(OUTETTS, "model.safetensors"))
    emb = text_embedding(wf.tensors)
    head = text_head(wf.tensors)
    assert emb is not None and emb.name == "model.embed_tokens.weight" and emb.shape == (4416, 8)
    assert head is not None and head.name == "lm_head.weight" and head.dtype == "F16"
    assert emb.data_end is not None and emb.data_start is not None and emb.data_end - emb.data_start == 4416 * 8 * 2


def _write_header(path, header: dict, data_len: int, declared_len: int | None = None) -> None:
    raw = json.dumps(header).encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", declared_len if declared_len is not None else len(raw)))
        fh.write(raw)
        fh.write(b"\0" * data_len)


@pytest.mark.parametrize(
    "header, data_len, declared, problem",
    [
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8, None, "past the end of the data"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 16, 10**9, "above the"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 16, 5000, "points past the end"),
        ({"w": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}}, 16, None, "unknown dtype"),
        (
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
            },
            16,
            None,
            "overlap",
        ),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, 16, None, "expected 16"),
        ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, 16, None, "non-negative"),
    ],
)
def test_hostile_safetensors_headers(tmp_path, header, data_len, declared, problem) -> None:
    path = tmp_path / "model.safetensors"
    _write_header(path, header, data_len, declared)
    with pytest.raises(ArtifactError) as info:
        read_safetensors_header(str(path))
    assert problem in info.value.problem


def test_sharded_index(tmp_path) -> None:
    save_file({"model.embed_tokens.weight": np.zeros((10, 4), "float16")}, str(tmp_path / "a.safetensors"))
    save_file({"lm_head.weight": np.zeros((10, 4), "float16")}, str(tmp_path / "b.safetensors"))
    index = {
        "metadata": {},
        "weight_map": {
            "model.embed_tokens.weight": "a.safetensors",
            "lm_head.weight": "b.safetensors",
            "x": "missing.safetensors",
        },
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    weights = load_sharded_safetensors(str(tmp_path / "model.safetensors.index.json"))
    assert set(weights.tensors) == {"model.embed_tokens.weight", "lm_head.weight"}
    assert any("missing.safetensors" in e.problem for e in weights.errors)


def test_sharded_index_without_any_shard_is_missing_content(tmp_path) -> None:
    # a model repository published without its shards (an install script downloads them): not a damaged save
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    weights = load_sharded_safetensors(str(tmp_path / "model.safetensors.index.json"))
    assert [type(e) for e in weights.errors] == [AbsentShards]
    assert isinstance(weights.errors[0], MissingContent)
    assert weights.errors[0].shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert "names 2 shards" in weights.errors[0].problem


def test_torch_zip_checkpoint_nested_state_dict(tmp_path) -> None:
    import torch

    state = {
        "model": {
            "gpt.text_embedding.weight": torch.zeros(7, 3, dtype=torch.bfloat16),
            "gpt.text_head.bias": torch.nn.Parameter(torch.zeros(7)),
        },
        "step": 3,
    }
    torch.save(state, tmp_path / "model.pth")
    wf = read_pickle_checkpoint(str(tmp_path / "model.pth"))
    assert wf.format == "torch-zip"
    assert wf.tensors["model.gpt.text_embedding.weight"].shape == (7, 3)
    assert wf.tensors["model.gpt.text_embedding.weight"].dtype == "BF16"
    assert wf.tensors["model.gpt.text_head.bias"].shape == (7,)


def test_legacy_torch_checkpoint_is_read_past_its_header_pickles(tmp_path) -> None:
    """torch.save before 1.6 wrote magic, protocol and sys-info pickles before the object."""
    import torch

    state = {"ema_model_state_dict": {"transformer.text_embed.text_embed.weight": torch.zeros(2546, 4)}}
    torch.save(state, tmp_path / "model_1200000.pt", _use_new_zipfile_serialization=False)
    wf = read_pickle_checkpoint(str(tmp_path / "model_1200000.pt"))
    assert wf.format == "torch-legacy"
    assert wf.tensors["ema_model_state_dict.transformer.text_embed.text_embed.weight"].shape == (2546, 4)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_read_never_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "model.bin").write_bytes(pickle.dumps({"w": _Evil(str(marker))}))
    wf = read_pickle_checkpoint(str(tmp_path / "model.bin"))
    assert not marker.exists()
    assert any(name == "system" for _, name in wf.pickle_globals)


def test_model_dir_collects_errors_without_raising() -> None:
    model = load_model_dir("fixtures/ART001/bad/truncated-files")
    assert model.config is None and model.tokenizer is not None
    assert sorted(os.path.basename(e.path) for e in model.errors) == ["config.json", "model.safetensors"]


def test_training_config_paths_resolve_against_config_then_project_root(tmp_path) -> None:
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    tokdir = project / "models" / "tokenizer"
    tokdir.mkdir(parents=True)
    with open(os.path.join(OUTETTS, "tokenizer.json"), encoding="utf-8") as fh:
        (tokdir / "tokenizer.json").write_text(fh.read())
    (project / "config" / "local.json").write_text("{}")
    (project / "config" / "train.yaml").write_text(
        "paths:\n  tokenizer: models/tokenizer  # a directory\n  extra: local.json\n"
        "finetuning:\n  pretrained_model: models/pretrained/missing.pt\nmodel:\n  n_vocab: 887\n"
    )
    config = load_training_config(str(project / "config" / "train.yaml"))
    by_key = {n.entry.key: n for n in config.named_files}
    assert by_key["tokenizer"].resolved == str(tokdir) and by_key["tokenizer"].tokenizer is not None
    assert config.tokenizer is by_key["tokenizer"]
    assert by_key["pretrained_model"].resolved is None and len(by_key["pretrained_model"].tried) == 2
    n_vocab = config.first_int("n_vocab")
    assert n_vocab is not None and n_vocab.value == 887 and n_vocab.line == 7


def test_yaml_errors(tmp_path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("model:\n  n_vocab: [1, 2\n")
    with pytest.raises(ArtifactError, match="invalid YAML"):
        load_training_config(str(path))


def test_source_syntax_error_and_suppressions(tmp_path) -> None:
    path = tmp_path / "x.py"
    path.write_text("def f(:\n")
    broken = load_source(str(path))  # a finding (ART006), not an unreadable input
    assert [(line, broken_) for line, _msg, broken_ in broken.notices] == [(1, True)]
    assert "syntax error" in broken.notices[0][1]
    path.write_text("a = 1  # ttsdoctor: ignore[TOK002, ATT001]\nb = 2  # ttsdoctor: ignore\n")
    source = load_source(str(path))
    assert source.suppressions == {1: frozenset({"TOK002", "ATT001"}), 2: None}


def test_a_vocab_json_of_another_program_is_not_judged_alone(tmp_path) -> None:
    """MaskGCT's G2P keeps its phones under a "vocab" key in vocab.json, next to Python files: no integer id at all, so
    not a tokenizer's vocabulary, and nothing to report. Beside tokenizer files the same file is a broken tokenizer."""
    phones = tmp_path / "g2p"
    phones.mkdir()
    (phones / "vocab.json").write_text(json.dumps({"vocab": {",": 0, ".": 1, "iː": 5}}, ensure_ascii=False))
    (phones / "english.py").write_text("VOCAB = 'vocab.json'\n")
    result = engine.run(ALL_RULES, discover([str(phones)]))
    assert [f for f in result.findings if f.severity.value != "info"] == []
    (phones / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    result = engine.run(ALL_RULES, discover([str(phones)]))
    assert [(f.rule_id, f.severity.value) for f in result.findings if "expected an integer" in f.message] == [
        ("ART001", "error")
    ]
