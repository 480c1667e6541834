"""tokenizer.json is read by ttsdoctor (BPE as the library writes it) or loaded through `tokenizers` without its
BPE merges (the rest): either way every id, token, added token and special flag must be exactly the library's."""

from __future__ import annotations

import glob
import json
import os

import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Tokenizer, models

from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.artifacts.tokenizer import load_tokenizer_json, without_merges


def _tokenizers_file(path: str) -> bool:
    """tokenizer.json, a merged one, or a vocab.json that is a whole tokenizers file (coqui XTTS); a GPT-2 style
    {token: id} vocab.json is not one."""
    if path.endswith(("tokenizer.json", "_merged.json")):
        with open(path, "rb") as fh:  # a Git LFS pointer named tokenizer.json is not one (TOK003's LFS case)
            return not fh.read(64).startswith(b"version https://git-lfs")
    if not path.endswith("vocab.json"):
        return False
    with open(path, "rb") as fh:
        return b'"model"' in fh.read()


TOKENIZER_FILES = sorted(
    p
    for p in glob.glob(os.path.join(FIXTURES, "**", "*.json"), recursive=True)
    if "hostile" not in p and _tokenizers_file(p)
)


def _same_as_the_library(path: str) -> str:
    """Compare everything a rule can ask with `Tokenizer.from_file`; return which reader was used."""
    full = Tokenizer.from_file(path)
    loaded = load_tokenizer_json(path)
    vocab = full.get_vocab(with_added_tokens=True)
    assert loaded.vocab == vocab
    decoder = full.get_added_tokens_decoder()
    assert loaded.added == {i: a.content for i, a in decoder.items()}
    assert loaded.special == {i for i, a in decoder.items() if a.special}
    assert loaded.kind == type(full.model).__name__
    assert loaded.max_id == max(vocab.values())
    for token_id in range(-1, loaded.max_id + 3):
        assert loaded.token(token_id) == (full.id_to_token(token_id) if token_id >= 0 else None), token_id
    for content in [*vocab, "<|not-a-token|>", ""]:
        assert loaded.token_id(content) == full.token_to_id(content), content
    declared = json.loads(open(path, encoding="utf-8").read()).get("added_tokens", [])
    assert [(a.position, a.declared_id, a.content, a.special) for a in loaded.declared_added] == [
        (i, a["id"], a["content"], a["special"]) for i, a in enumerate(declared)
    ]
    state = json.loads(full.pre_tokenizer.__getstate__()) if full.pre_tokenizer is not None else {}
    members = state.get("pretokenizers", [state]) if state else []
    assert loaded.pre_tokenizers == tuple(m["type"] for m in members)
    return type(loaded._lookup).__name__


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


def _edited(tmp_path, name: str, edit) -> str:
    """A library-written BPE tokenizer.json, edited as JSON by `edit(doc)`."""
    tok = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3, "É": 4}, merges=[("a", "b")]))
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True), AddedToken("<|PAD|>", special=True)])
    tok.add_tokens([AddedToken("<|AUDIO_0|>", normalized=True), AddedToken("e\u0301x", normalized=True)])
    path = tmp_path / f"{name}.json"
    tok.save(str(path))
    doc = json.loads(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def _normalizer(spec):
    def edit(doc):
        doc["normalizer"] = spec

    return edit


def _set_added(field, value, index=-1):
    def edit(doc):
        doc["added_tokens"][index][field] = value

    return edit


def _vocab_ids(shift: int):
    def edit(doc):
        doc["model"]["vocab"] = {t: i + (shift if i > 2 else 0) for t, i in doc["model"]["vocab"].items()}

    return edit


def _duplicate_added(doc):
    doc["added_tokens"].append({**doc["added_tokens"][1], "special": False})


@pytest.mark.parametrize(
    "name, edit, reader",
    [
        ("as-written", lambda doc: None, "_Tables"),
        # a content already in the vocabulary keeps its id there (GPT-2's <|endoftext|>)
        ("declared-ids-wrong", _set_added("id", 99, 1), "_Tables"),
        # the normalizer changes normalized added tokens: id_to_token answers the normalized form
        ("lowercase", _normalizer({"type": "Lowercase"}), "_Tables"),
        ("nfc", _normalizer({"type": "NFC"}), "_Tables"),
        (
            "nfkd-sequence",
            _normalizer({"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Lowercase"}]}),
            "_Tables",
        ),
        # what the reader leaves to the library, which still gives the same answers
        ("vocabulary-with-holes", _vocab_ids(5), "_Library"),
        ("same-content-twice", _duplicate_added, "_Library"),
        ("empty-content", _set_added("content", ""), "_Library"),
        ("id-past-u32", _set_added("id", 1 << 32), "_Library"),
    ],
)
def test_the_reader_gives_the_library_answers_or_leaves_the_file_to_it(tmp_path, name, edit, reader) -> None:
    path = _edited(tmp_path, name, edit)
    if name == "id-past-u32":  # the library refuses the file: the message is its own
        with pytest.raises(ArtifactError, match="the tokenizers library cannot load it"):
            load_tokenizer_json(path)
        return
    assert _same_as_the_library(path) == reader


def test_what_the_library_refuses_is_said_in_its_words(tmp_path) -> None:
    for name, edit in {
        "unknown-normalizer": _normalizer({"type": "NoSuchNormalizer"}),
        "bad-dropout": lambda doc: doc["model"].update(dropout=7.0),
        "added-token-missing-a-field": lambda doc: doc["added_tokens"][0].pop("lstrip"),
    }.items():
        path = _edited(tmp_path, name, edit)
        with pytest.raises(ArtifactError, match="the tokenizers library cannot load it"):
            load_tokenizer_json(path)


added_tokens = st.lists(
    st.tuples(
        st.sampled_from(["a", "ab", "<|x|>", "<|X|>", "É", "e\u0301", "merges", ""]), st.booleans(), st.booleans()
    ),
    max_size=8,
)
normalizers = st.sampled_from([None, {"type": "Lowercase"}, {"type": "NFC"}, {"type": "NFKD"}, {"type": "Strip"}])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens, added_tokens, normalizers, st.integers(0, 3))
def test_any_added_tokens_give_the_library_ids(tmp_path, vocab, added, normalizer, holes) -> None:
    """Added tokens in and out of the vocabulary, repeated, empty, normalized or not, under normalizers that
    change them or not, over vocabularies with and without holes: the answers are the library's."""
    unique = list(dict.fromkeys([*vocab, "a", "b", "ab"]))
    ids = {t: i + (holes if i >= len(unique) - 2 else 0) for i, t in enumerate(unique)}
    tok = Tokenizer(models.BPE(vocab=ids, merges=[("a", "b")]))
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    doc = json.loads(open(path, encoding="utf-8").read())
    doc["normalizer"] = normalizer
    doc["added_tokens"] = [
        {
            "id": 1000 + i,
            "content": c,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": n,
            "special": sp,
        }
        for i, (c, n, sp) in enumerate(added)
    ]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
    try:
        Tokenizer.from_file(path)
    except Exception:
        with pytest.raises(ArtifactError):
            load_tokenizer_json(path)
        return
    reader = _same_as_the_library(path)
    clean = holes == 0 and all(c for c, _, _ in added) and len({c for c, _, _ in added}) == len(added)
    assert reader == ("_Tables" if clean else "_Library")


def test_a_deeply_nested_tokenizer_json_is_unreadable_not_a_crash(tmp_path) -> None:
    """msgspec raises RecursionError where the JSON nests too deeply: the library's load explains instead."""
    for name, text in {
        "normalizer": '{"model":{"type":"BPE","vocab":{},"merges":[]},"normalizer":'
        + "[" * 200_000
        + "]" * 200_000
        + "}",
        "whole-file": "[" * 500_000,
    }.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ArtifactError, match=r"nested too deeply|cannot load it"):
            load_tokenizer_json(str(path))
