"""tokenizer.json is loaded through `tokenizers` without its BPE merges: the ids must be exactly the library's."""

from __future__ import annotations

import glob
import json
import os

import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Tokenizer, models

from ttsdoctor.artifacts.tokenizer import load_tokenizer_json, without_merges

TOKENIZER_FILES = sorted(
    p
    for p in glob.glob(os.path.join(FIXTURES, "**", "*.json"), recursive=True)
    if "hostile" not in p and p.endswith(("tokenizer.json", "vocab.json", "_merged.json"))
)


def _same_as_the_library(path: str) -> None:
    full = Tokenizer.from_file(path)
    loaded = load_tokenizer_json(path)
    assert loaded._tok.get_vocab(with_added_tokens=True) == full.get_vocab(with_added_tokens=True)
    ours = {i: (a.content, a.special) for i, a in loaded._tok.get_added_tokens_decoder().items()}
    assert ours == {i: (a.content, a.special) for i, a in full.get_added_tokens_decoder().items()}
    assert loaded.kind == type(full.model).__name__
    assert loaded.max_id == max(full.get_vocab(with_added_tokens=True).values())


@pytest.mark.parametrize("path", TOKENIZER_FILES, ids=lambda p: os.path.relpath(p, FIXTURES))
def test_fixture_tokenizers_give_the_library_ids(path: str) -> None:
    with open(path, "rb") as fh:
        raw = fh.read()
    if b'"model"' not in raw:
        pytest.fail(f"{path} is not a tokenizers file")  # the glob above must only pick tokenizers files
    _same_as_the_library(path)


def test_library_written_bpe_takes_the_fast_path() -> None:
    path = os.path.join(FIXTURES, "TOK001", "bad", "outetts-pad-eos-0", "tokenizer.json")
    with open(path, "rb") as fh:
        raw = fh.read()
    cut = without_merges(raw)
    assert cut is not None and json.loads(cut)["model"]["merges"] == []
    assert len(json.loads(raw)["model"]["merges"]) > 10
    doc = json.loads(raw)
    doc["model"]["merges"] = []
    assert json.loads(cut) == doc  # nothing else changed


def _bpe_file(tmp_path, tokens: list[str], layout: str = "library") -> str:
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    merges = [(a, b) for a in list(vocab)[:6] for b in list(vocab)[:3] if a + b in vocab]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.add_special_tokens([AddedToken("<|pad|>", special=True), AddedToken("merges", special=False)])
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    if layout != "library":
        doc = json.loads(open(path, encoding="utf-8").read())
        if layout == "model-first":
            doc = {"model": doc.pop("model"), **doc}
        elif layout == "extra-key-after-merges":
            doc["model"]["extra"] = {"merges": [["a", "b"]]}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
    return path


@pytest.mark.parametrize("layout", ["model-first", "extra-key-after-merges"])
def test_other_layouts_are_loaded_whole(tmp_path, layout: str) -> None:
    path = _bpe_file(tmp_path, ["a", "b", "ab", "merges", '":', "]}"], layout)
    assert without_merges(open(path, "rb").read()) is None
    _same_as_the_library(path)


tokens = st.lists(
    st.text(alphabet=st.sampled_from(list('ab"\\:[]{},mergs é\n\t')), min_size=1, max_size=6), min_size=1, max_size=30
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens, st.booleans())
def test_any_vocabulary_gives_the_library_ids(tmp_path, vocab: list[str], pretty: bool) -> None:
    """Quotes, backslashes, colons, brackets and a token spelled "merges" cannot fool the cut."""
    vocab = [*vocab, "merges", "a", "b", "ab"]
    unique = list(dict.fromkeys(vocab))
    merges = [(a, b) for a in unique for b in unique if a + b in unique and a + b not in (a, b)][:50]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(unique)}, merges=merges))
    tok.add_tokens(['merges"\\', "<|x|>"])
    path = str(tmp_path / "tokenizer.json")
    tok.save(path, pretty=pretty)
    raw = open(path, "rb").read()
    cut = without_merges(raw)
    assert cut is not None
    doc = json.loads(raw)
    doc["model"]["merges"] = []
    assert json.loads(cut) == doc
    _same_as_the_library(path)


def test_pre_tokenizer_types_and_tok008_follow_what_qwen2tokenizer_would_rebuild(tmp_path) -> None:
    """TOK008 reports a qwen2 folder only when its tokenizer.json is not a byte-level BPE (what Qwen2Tokenizer
    rebuilds): a Metaspace BPE (SentencePiece style) is reported, a Split + ByteLevel sequence is not."""
    from tokenizers import Regex, pre_tokenizers

    from ttsdoctor.discover import discover
    from ttsdoctor.engine import run
    from ttsdoctor.registry import ALL_RULES

    cases = {
        "metaspace": (pre_tokenizers.Metaspace(), ("Metaspace",), True),
        "split-bytelevel": (
            pre_tokenizers.Sequence(
                [pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"), pre_tokenizers.ByteLevel(use_regex=False)]
            ),
            ("Split", "ByteLevel"),
            False,
        ),
    }
    for name, (pre, types, reported) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        tok = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
        tok.pre_tokenizer = pre
        tok.save(str(folder / "tokenizer.json"))
        (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "vocab_size": 3}))
        assert load_tokenizer_json(str(folder / "tokenizer.json")).pre_tokenizers == types
        rules = tuple(r for r in ALL_RULES if r.id == "TOK008")
        found = run(rules, discover([str(folder)])).findings
        assert bool(found) is reported, (name, found)
        if reported:
            assert "the saved tokenizer is BPE with pre-tokenizer Metaspace" in found[0].message
