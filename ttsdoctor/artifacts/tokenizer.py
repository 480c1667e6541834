"""Tokenizers: tokenizer.json (read by ttsdoctor when it is a BPE as the library writes it, else through the
`tokenizers` library), plus the files around it.

What rules need from a tokenizer: the effective id of every token (added tokens included, as the
library assigns them, not as the file declares them), which tokens are special, the max id, and
the special tokens that tokenizer_config.json / special_tokens_map.json name.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any, NamedTuple, NoReturn

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError, decode_utf8, read_bytes, regular_file_size
from ttsdoctor.artifacts.jsonfile import JsonDoc, load_json, parse_json_text
from ttsdoctor.limits import limit, over

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
)


class DeclaredAddedToken(NamedTuple):  # a tuple: thousands are made per file, a frozen dataclass is 5x slower
    position: int  # index in tokenizer.json added_tokens[] (`index` is a tuple method)
    declared_id: Any
    content: str
    special: bool


class _Library:
    """Lookups through a `tokenizers.Tokenizer` (C speed, no Python dict of the vocabulary)."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def token(self, token_id: int) -> str | None:
        found: str | None = self.tok.id_to_token(token_id)
        return found

    def token_id(self, content: str) -> int | None:
        found: int | None = self.tok.token_to_id(content)
        return found

    def vocab(self) -> dict[str, int]:
        vocab: dict[str, int] = self.tok.get_vocab(with_added_tokens=True)
        return vocab


class _Tables:
    """Lookups in dicts, with the library's precedence: added tokens first, then the model's vocabulary.

    `shown` is what `id_to_token` answers for an added token the normalizer changes (the library keeps the
    normalized form for decoding); the reverse of the model's vocabulary is built on the first id asked."""

    def __init__(self, model: dict[str, int], added: dict[str, int] | None = None, shown: dict[int, str] | None = None):
        self.model = model
        self.added = added or {}
        self.added_by_id = {i: t for t, i in self.added.items()}
        self.added_by_id.update(shown or {})
        self._by_id: dict[int, str] | None = None

    def token(self, token_id: int) -> str | None:
        found = self.added_by_id.get(token_id)
        if found is not None:
            return found
        if self._by_id is None:
            self._by_id = {i: t for t, i in self.model.items()}
        return self._by_id.get(token_id)

    def token_id(self, content: str) -> int | None:
        found = self.added.get(content)
        return found if found is not None else self.model.get(content)

    def vocab(self) -> dict[str, int]:
        return {**self.model, **self.added} if self.added else self.model


class TokenizerFile(msgspec.Struct):
    """tokenizer.json (or a plain vocab.json, or a GGUF's token list) with effective ids.

    A tokenizer.json as the library writes it (BPE, the common case) is read by ttsdoctor itself
    (`_read_bpe`): the vocabulary is one dict, the merges are never built. Other files are loaded through
    `tokenizers` without their BPE merges (`without_merges`): lookups then go through the library object,
    which answers ids and tokens and must not encode text. Either way the ids are the library's.
    """

    path: str
    kind: str  # model type: BPE, WordPiece, Unigram, WordLevel, or "vocab.json"
    max_id: int
    special: frozenset[int]  # ids of tokens flagged special
    added: dict[int, str]  # effective id -> content of every added token
    declared_added: tuple[DeclaredAddedToken, ...] = ()
    pre_tokenizers: tuple[str, ...] = ()  # the pre-tokenizer's types, a Sequence's members in order
    # the special tokens the post-processor adds to every encoding (a template's, BERT's [CLS]/[SEP]); None: unknown
    post_specials: frozenset[str] | None = frozenset()
    _lookup: _Library | _Tables = msgspec.field(default_factory=lambda: _Tables({}))
    _vocab: dict[str, int] | None = None

    @property
    def vocab(self) -> dict[str, int]:
        """token -> effective id, added tokens included (built on first use)."""
        if self._vocab is None:
            self._vocab = self._lookup.vocab()
        return self._vocab

    @property
    def id_count(self) -> int:
        """The number of embedding rows the tokenizer needs: max id + 1."""
        return self.max_id + 1

    def token(self, token_id: int) -> str | None:
        return self._lookup.token(token_id) if token_id >= 0 else None

    def token_id(self, content: str) -> int | None:
        return self._lookup.token_id(content)

    def __contains__(self, content: object) -> bool:
        return isinstance(content, str) and self.token_id(content) is not None

    @classmethod
    def of_vocab(
        cls,
        path: str,
        kind: str,
        vocab: dict[str, int],
        special: frozenset[int] = frozenset(),
        added: dict[int, str] | None = None,
        max_id: int | None = None,
    ) -> TokenizerFile:
        """A tokenizer known by its token -> id dict alone (vocab.json, a GGUF's token list)."""
        top = max(vocab.values(), default=-1) if max_id is None else max_id
        return cls(path=path, kind=kind, max_id=top, special=special, added=added or {}, _lookup=_Tables(vocab))


def _pre_tokenizer_types(state: Any) -> tuple[str, ...]:
    """("Split", "ByteLevel") for a Sequence, ("Metaspace",) for one, () for none: from the JSON state."""
    if not isinstance(state, dict):
        return ()
    members = state.get("pretokenizers", [state])
    return tuple(str(m.get("type")) for m in members if isinstance(m, dict)) if isinstance(members, list) else ()


class TokenizerBundle(msgspec.Struct, dict=True):  # dict: room for the cached declared_ids
    """All tokenizer files of one directory (or one named tokenizer file)."""

    directory: str
    file: TokenizerFile | None = None
    symbols: SymbolList | None = None  # vocab.txt (F5-TTS)
    config: JsonDoc | None = None  # tokenizer_config.json
    special_map: JsonDoc | None = None  # special_tokens_map.json
    added_tokens: JsonDoc | None = None  # added_tokens.json
    errors: list[ArtifactError] = []

    @property
    def present(self) -> bool:
        return any((self.file, self.config, self.special_map, self.added_tokens, self.symbols))

    def resolve(self, content: str) -> int | None:
        """The id a token string gets: tokenizer.json first, then the declarations around it."""
        if self.file is not None:
            found = self.file.token_id(content)
            if found is not None:
                return found
        return self.declared_ids.get(content)

    @functools.cached_property
    def declared_ids(self) -> dict[str, int]:
        """Token -> id as the files beside tokenizer.json declare them (added_tokens.json over tokenizer_config.json's
        added_tokens_decoder): what a folder without tokenizer.json still tells about its added tokens."""
        out: dict[str, int] = {}
        decoder = self.config.data.get("added_tokens_decoder") if self.config is not None else None
        if isinstance(decoder, dict):
            for key, entry in decoder.items():
                if isinstance(entry, dict) and isinstance(entry.get("content"), str) and str(key).isdigit():
                    out.setdefault(entry["content"], int(key))
        if self.added_tokens is not None and isinstance(self.added_tokens.data, dict):
            for content, value in self.added_tokens.data.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    out[content] = value
        return out

    def is_special(self, token_id: int) -> bool | None:
        if self.file is not None and self.file.token(token_id) is not None and token_id in self.file.special:
            return True
        if self.config is not None:
            decoder = self.config.data.get("added_tokens_decoder")
            if isinstance(decoder, dict):
                entry = decoder.get(str(token_id))
                if isinstance(entry, dict) and entry.get("special") is True:
                    return True
        if self.file is not None and self.file.token(token_id) is not None:
            return False
        return None


def _declared_added_tokens(text: str) -> tuple[DeclaredAddedToken, ...]:
    """Read only the top-level `added_tokens` array, without parsing the whole (large) file again."""
    key = text.find('"added_tokens"')
    if key < 0:
        return ()
    start = text.find("[", key)
    if start < 0 or text[key + len('"added_tokens"') : start].strip() != ":":
        return ()
    try:
        entries, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return ()
    out = []
    if isinstance(entries, list):
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and isinstance(entry.get("content"), str):
                out.append(DeclaredAddedToken(index, entry.get("id"), entry["content"], entry.get("special") is True))
    return tuple(out)


def _declared_from_head(raw: bytes) -> tuple[DeclaredAddedToken, ...]:
    """The top-level added_tokens array, decoded from the beginning of the file only (it comes first)."""
    limit = 1 << 20
    while True:
        text = raw[:limit].decode("utf-8", errors="ignore")
        declared = _declared_added_tokens(text)
        key = text.find('"added_tokens"')
        if declared or limit >= len(raw) or key < 0 or '"normalizer"' in text[key:]:
            return declared
        limit *= 4


_MERGES_KEY = re.compile(rb'"merges"\s*:\s*\[')
_MODEL_TAIL = re.compile(rb"\]\s*\}\s*\}\s*\Z")
# A JSON string (escapes included), a merge ("a b" or ["a", "b"]), and a whole merges array: possessive
# quantifiers (Python 3.11) keep the match linear in the size of the file.
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_MERGE = rb"(?:" + _STRING + rb"|\[\s*+" + _STRING + rb"\s*+,\s*+" + _STRING + rb"\s*+\])"
_MERGES_ARRAY = re.compile(rb"\[\s*+(?:" + _MERGE + rb"\s*+(?:,\s*+" + _MERGE + rb"\s*+)*+)?\]")


def without_merges(raw: bytes) -> bytes | None:
    """tokenizer.json with its BPE merges list emptied, or None when that cannot be done with certainty.

    Merges decide how text is split, never which tokens exist or their ids, and no rule encodes text;
    building them is half of what `tokenizers` spends loading a 150k-token BPE. The cut is made only for
    the layout the library writes (merges last in "model", "model" last in the file), and only once the
    span has been matched as exactly one JSON array of merges (about 30 ms for 150k merges).
    """
    tail = _MODEL_TAIL.search(raw, max(0, len(raw) - 64))
    if tail is None:
        return None
    end = tail.start()  # the "]" that must close merges
    at = raw.rfind(b'"merges"', 0, end)
    for _ in range(64):  # a token spelled "merges" may come later; a file full of them is not worth it
        if at < 0:
            return None
        key = _MERGES_KEY.match(raw, at)
        if key is not None and (at == 0 or raw[at - 1] != 0x5C):
            array = _MERGES_ARRAY.match(raw, key.end() - 1)
            if array is None or array.end() != end + 1:
                return None
            return raw[: key.end() - 1] + b"[]" + raw[end + 1 :]
        at = raw.rfind(b'"merges"', 0, at)
    return None


def load_tokenizer_json(path: str) -> TokenizerFile:
    size = regular_file_size(path)
    if size > limit("tokenizer_bytes"):
        raise ArtifactError(path, f"is {over('tokenizer_bytes', size)}")
    if size == 0:
        raise ArtifactError(path, "file is empty")
    raw = read_bytes(path, "tokenizer_bytes")
    return _read_bpe(path, raw) or _load_with_library(path, raw)


def _load_with_library(path: str, raw: bytes) -> TokenizerFile:
    from tokenizers import Tokenizer  # ~15 ms to import: only when a tokenizer is present

    tok = None
    cut = without_merges(raw)
    if cut is not None:
        try:
            tok = Tokenizer.from_buffer(cut)
        except Exception:  # the full file decides, and explains
            tok = None
    if tok is None:
        try:
            tok = Tokenizer.from_buffer(raw)
        except Exception as exc:  # the library raises plain Exception with its own message
            _explain_unloadable(path, raw, exc)
    added_tokens = tok.get_added_tokens_decoder()
    added = {i: a.content for i, a in added_tokens.items()}
    special = frozenset(i for i, a in added_tokens.items() if a.special)
    vocab = None
    if type(tok.model).__name__ == "Unigram":  # ids are positions in a list: no holes
        max_id = max([tok.get_vocab_size(with_added_tokens=False) - 1, *added])
    else:  # a dict may skip ids: {"a": 0, "b": 3} has 2 entries and needs 4 rows
        vocab = tok.get_vocab(with_added_tokens=True)
        max_id = max(vocab.values(), default=-1)
    pre = tok.pre_tokenizer
    try:
        pre_state = json.loads(pre.__getstate__()) if pre is not None else None
    except (TypeError, ValueError):
        pre_state = {"type": type(pre).__name__}
    post = tok.post_processor
    try:
        post_state = json.loads(post.__getstate__()) if post is not None else None
    except (TypeError, ValueError):
        post_state = {"type": type(post).__name__}
    return TokenizerFile(
        path=path,
        kind=type(tok.model).__name__,
        max_id=max_id,
        special=special,
        added=added,
        declared_added=_declared_from_head(raw),
        pre_tokenizers=_pre_tokenizer_types(pre_state),
        post_specials=_post_specials(post_state),
        _lookup=_Library(tok),
        _vocab=vocab,
    )


_U32 = 1 << 32
_UNICODE_FORMS = ("NFC", "NFD", "NFKC", "NFKD")  # leave ASCII unchanged, so no need to ask the library


def _read_bpe(path: str, raw: bytes) -> TokenizerFile | None:
    """A BPE tokenizer.json read by ttsdoctor, with the ids the library would give; None when the file is not
    the plain case this covers, for the library to load (and explain).

    The whole file is parsed as JSON by msgspec, which skips what it is not asked to build: the merges are
    checked to be JSON, never built (they decide how text splits, not which ids exist; the library checks
    their entries when it loads the file). The vocabulary must hold the ids 0..n-1 once each, the added
    tokens distinct non-empty contents: then the library gives an added token its vocabulary id when its
    content is in the vocabulary, else the next id from n, in file order (tokenizers' AddedVocabulary). The
    rest (normalizer, pre-tokenizer, post-processor, decoder, the model's options) is checked by loading it
    in the library with an empty vocabulary: a file the library refuses goes to the library's own load.
    """
    try:
        doc = msgspec.json.decode(raw, type=_bpe_file_type())
        normalizer = _json_or_none(doc.normalizer)
        pre_tokenizer = _json_or_none(doc.pre_tokenizer)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # the library's load says what is wrong (nested too deeply: its own message)
    if doc.model.type != "BPE":
        return None  # another model type, or none named: the library decides
    vocab: dict[str, int] = doc.model.vocab
    declared = doc.added_tokens
    n = len(vocab)
    ids = vocab.values()
    if n and (max(ids) != n - 1 or min(ids) < 0 or len(set(ids)) != n):
        return None  # holes or shared ids: the library's answer is not this simple
    contents = [a.content for a in declared]
    if "" in contents or len(set(contents)) != len(contents) or any(not 0 <= a.id < _U32 for a in declared):
        return None
    stub = _library_stub(doc)
    if stub is None:
        return None
    added: dict[str, int] = {}
    by_id: dict[int, Any] = {}
    next_id = n
    for entry in declared:
        token_id = vocab.get(entry.content)
        if token_id is None:
            token_id, next_id = next_id, next_id + 1
        added[entry.content] = token_id
        by_id[token_id] = entry
    shown: dict[int, str] = {}
    if stub.normalizer is not None:
        simple = isinstance(normalizer, dict) and normalizer.get("type") in _UNICODE_FORMS
        for token_id, entry in by_id.items():
            if entry.normalized and not (simple and entry.content.isascii()):
                normed = stub.normalizer.normalize_str(entry.content)
                if normed != entry.content:
                    shown[token_id] = normed
    return TokenizerFile(
        path=path,
        kind="BPE",
        max_id=max([n - 1, *by_id]),
        special=frozenset(i for i, a in by_id.items() if a.special),
        added={i: a.content for i, a in by_id.items()},
        declared_added=tuple(DeclaredAddedToken(i, a.id, a.content, a.special) for i, a in enumerate(declared)),
        pre_tokenizers=_pre_tokenizer_types(pre_tokenizer),
        post_specials=_post_specials(_json_or_none(doc.post_processor)),
        _lookup=_Tables(vocab, added, shown),
    )


def _post_specials(state: Any) -> frozenset[str] | None:
    """The special tokens a tokenizer.json post-processor adds: a template's `special_tokens`, BERT's and RoBERTa's
    cls and sep, the members' of a Sequence; none for ByteLevel or no post-processor; None for another kind."""
    if state is None:
        return frozenset()
    if not isinstance(state, dict):
        return None
    kind = state.get("type")
    if kind == "ByteLevel":
        return frozenset()
    if kind == "TemplateProcessing" and isinstance(state.get("special_tokens"), dict):
        return frozenset(state["special_tokens"])
    if kind in ("BertProcessing", "RobertaProcessing"):
        pairs = [state.get("cls"), state.get("sep")]
        return frozenset(p[0] for p in pairs if isinstance(p, list) and p and isinstance(p[0], str))
    if kind == "Sequence" and isinstance(state.get("processors"), list):
        parts = [_post_specials(member) for member in state["processors"]]
        return None if any(p is None for p in parts) else frozenset().union(*(p for p in parts if p is not None))
    return None


# The parts of tokenizer.json the library reads (it ignores other keys, at the top and in a BPE model)
_TOP_PARTS = ("version", "truncation", "padding", "normalizer", "pre_tokenizer", "post_processor", "decoder")
_BPE_OPTIONS = (
    "dropout",
    "unk_token",
    "continuing_subword_prefix",
    "end_of_word_suffix",
    "fuse_unk",
    "byte_fallback",
    "ignore_merges",
)


@functools.cache
def _bpe_file_type() -> Any:
    """msgspec types for a BPE tokenizer.json, built on first use (msgspec is imported only then): the
    vocabulary and added tokens decoded, the merges only checked to be JSON, the other parts kept as raw JSON
    for the library's stub. One pass over the file."""
    raw_or_unset = msgspec.Raw | msgspec.UnsetType
    unset = msgspec.UNSET

    class AddedEntry(msgspec.Struct):  # every field: the library requires them all
        id: int
        content: str
        single_word: bool
        lstrip: bool
        rstrip: bool
        normalized: bool
        special: bool

    model = msgspec.defstruct(
        "Model",
        [
            ("vocab", dict[str, int]),
            ("merges", msgspec.Raw),
            ("type", str | None | msgspec.UnsetType, unset),
            *((name, raw_or_unset, unset) for name in _BPE_OPTIONS),
        ],
    )
    return msgspec.defstruct(
        "TokenizerJson",
        [
            ("model", model),
            ("added_tokens", list[AddedEntry], []),
            *((name, raw_or_unset, unset) for name in _TOP_PARTS),
        ],
    )


def _json_or_none(value: Any) -> Any:
    return None if value is msgspec.UNSET else msgspec.json.decode(value)


def _library_stub(doc: Any) -> Any:
    """The file without its vocabulary, merges and added tokens, loaded by the library (a few ms): None when
    the library refuses it. It validates everything this reader does not, and holds the normalizer."""
    from tokenizers import Tokenizer

    def members(obj: Any, names: tuple[str, ...]) -> list[bytes]:
        return [
            b'"' + name.encode() + b'":' + bytes(value)
            for name in names
            if (value := getattr(obj, name)) is not msgspec.UNSET
        ]

    model = [b'"type":"BPE"', *members(doc.model, _BPE_OPTIONS), b'"vocab":{}', b'"merges":[]']
    stub = b"{" + b",".join([*members(doc, _TOP_PARTS), b'"model":{' + b",".join(model) + b"}"]) + b"}"
    try:
        return Tokenizer.from_buffer(stub)
    except Exception:
        return None


def _explain_unloadable(path: str, raw: bytes, exc: Exception) -> NoReturn:
    """Raise an ArtifactError that says why the tokenizers library refused the file."""
    parse_json_text(path, decode_utf8(path, raw))  # empty or invalid JSON: its own message, line and column
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise ArtifactError(path, f"the tokenizers library cannot load it: {detail}") from None


class NotAVocabulary(ArtifactError):
    """A vocab.json that is valid JSON but no {token: id} map: another program's vocabulary (MaskGCT's G2P phones
    under a "vocab" key), or a broken tokenizer file when the folder has other tokenizer files."""


def load_vocab_json(path: str) -> TokenizerFile:
    """A GPT-2 style {token: id} vocab.json, or (coqui XTTS) a whole tokenizers JSON named vocab.json."""
    doc = load_json(path)
    if isinstance(doc.data.get("model"), dict) and "version" in doc.data:
        return load_tokenizer_json(path)
    vocab: dict[str, int] = {}
    for token, token_id in doc.data.items():
        if not isinstance(token_id, int) or isinstance(token_id, bool):
            shown = repr(token_id) if len(repr(token_id)) <= 60 else f"a {type(token_id).__name__}"
            # no integer id at all: not a token -> id map; some: a vocabulary with a broken entry
            kind = ArtifactError if vocab or any(type(v) is int for v in doc.data.values()) else NotAVocabulary
            raise kind(path, f"vocab entry {token!r} has id {shown}, expected an integer")
        vocab[token] = token_id
    return TokenizerFile.of_vocab(path, "vocab.json", vocab)


# Files that make a vocab.json a tokenizer's: without any of them, a vocab.json of another shape is not ours to judge
_TOKENIZER_COMPANIONS = ("tokenizer_config.json", "merges.txt", "special_tokens_map.json", "added_tokens.json")


def _other_tokenizer_json(directory: str) -> str | None:
    """A directory that holds one tokenizer under another name (`Am_tokenizer_merged.json`)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    found = [n for n in names if n.endswith(".json") and "tokenizer" in n.lower() and n not in TOKENIZER_FILES]
    if len(found) != 1:
        return None
    path = os.path.join(directory, found[0])
    try:
        data = json.loads(read_bytes(path, "tokenizer_bytes"))
    except (ArtifactError, ValueError):
        return path  # damaged or too large: the tokenizer loader says how
    # a tokenizers-library file has a model; anything else so named is another program's JSON (an empty `{}`
    # fuzzy_tokenizer.json beside a BERT tokenizer_config.json), which nothing loads as a tokenizer
    return path if isinstance(data, dict) and "model" in data else None


WORDPIECE_SPECIALS = frozenset({"[UNK]", "[CLS]", "[SEP]"})


class SymbolList(msgspec.Struct, frozen=True):
    """vocab.txt with one symbol a line (F5-TTS): the id of a symbol is its line index."""

    path: str
    symbols: tuple[str, ...]

    @property
    def duplicates(self) -> list[tuple[str, int, int]]:
        """(symbol, first line index, repeated line index) for every repeated symbol."""
        first: dict[str, int] = {}
        out = []
        for index, symbol in enumerate(self.symbols):
            if symbol in first:
                out.append((symbol, first[symbol], index))
            else:
                first[symbol] = index
        return out

    @property
    def unique(self) -> int:
        return len(set(self.symbols))

    @property
    def wordpiece(self) -> bool:
        """BERT's WordPiece vocab.txt ([PAD], [unused1]..., [UNK], [CLS], [SEP], ##-pieces), not a symbol list:
        a G2P or text-encoder BERT beside a TTS model (Amphion's MaskGCT polyphone model) ships one."""
        return WORDPIECE_SPECIALS.issubset(self.symbols)


def load_symbol_list(path: str) -> SymbolList:
    text = decode_utf8(path, read_bytes(path, "tokenizer_bytes"))
    if not text:
        raise ArtifactError(path, "file is empty")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return SymbolList(path, tuple(line[:-1] if line.endswith("\r") else line for line in lines))


def load_tokenizer_bundle(directory: str, tokenizer_file: str | None = None) -> TokenizerBundle:
    """Load the tokenizer files of `directory`; `tokenizer_file` names a specific tokenizer JSON."""
    bundle = TokenizerBundle(directory=directory)
    main = tokenizer_file or os.path.join(directory, "tokenizer.json")
    if tokenizer_file is None and not os.path.lexists(main):
        main = _other_tokenizer_json(directory) or main
    try:
        if main.endswith(".txt"):
            pass  # a symbol list, read below
        elif os.path.lexists(main):
            bundle.file = load_tokenizer_json(main)
        elif tokenizer_file is None and os.path.lexists(os.path.join(directory, "vocab.json")):
            bundle.file = load_vocab_json(os.path.join(directory, "vocab.json"))
    except NotAVocabulary as exc:
        if any(os.path.lexists(os.path.join(directory, name)) for name in _TOKENIZER_COMPANIONS):
            bundle.errors.append(exc)
    except ArtifactError as exc:
        bundle.errors.append(exc)
    symbols = (
        tokenizer_file
        if tokenizer_file is not None and tokenizer_file.endswith(".txt")
        else (os.path.join(directory, "vocab.txt") if tokenizer_file is None else None)
    )
    if symbols is not None and os.path.lexists(symbols):
        try:
            listed = load_symbol_list(symbols)
            bundle.symbols = None if listed.wordpiece else listed
        except ArtifactError as exc:
            bundle.errors.append(exc)
    if tokenizer_file is None:
        for name, attr in (
            ("tokenizer_config.json", "config"),
            ("special_tokens_map.json", "special_map"),
            ("added_tokens.json", "added_tokens"),
        ):
            path = os.path.join(directory, name)
            if os.path.lexists(path):
                try:
                    setattr(bundle, attr, load_json(path))
                except ArtifactError as exc:
                    bundle.errors.append(exc)
    return bundle
