"""Special-token declarations gathered from every level of a model directory.

The same role (pad, eos, bos, unk) is declared in config.json (and its sub-configs),
generation_config.json, tokenizer_config.json and special_tokens_map.json. Each declaration becomes
a `SpecialDecl` with the ids it resolves to and where it was written.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ttsdoctor.artifacts.hf_config import ConfigScope, scopes
from ttsdoctor.artifacts.jsonfile import JsonDoc, escape_pointer_part
from ttsdoctor.artifacts.tokenizer import TokenizerBundle

ROLES = ("pad", "eos", "bos", "unk")


class SpecialDecl(msgspec.Struct, frozen=True):
    role: str
    ids: tuple[int, ...]  # () when a named token is not in the tokenizer
    token: str | None  # the token string when the level names one
    level: str  # human name of the level: "config.json", "config.json (decoder)", "tokenizer_config.json"
    path: str
    pointer: str
    doc: JsonDoc | None  # where the position is found, on demand; not compared
    text_space: bool = True  # the ids index the tokenizer's vocabulary (not a codebook sub-vocabulary)
    scope: str = ""  # sub-config name, "" at the top level
    # transformers never reads it: special_tokens_map.json beside a tokenizer_config.json with added_tokens_decoder
    unread: bool = False

    def _identity(self) -> tuple[Any, ...]:
        return (
            self.role,
            self.ids,
            self.token,
            self.level,
            self.path,
            self.pointer,
            self.text_space,
            self.scope,
            self.unread,
        )

    def __eq__(self, other: object) -> bool:
        return self._identity() == other._identity() if isinstance(other, SpecialDecl) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._identity())

    @property
    def line(self) -> int | None:
        return self.doc.position(self.pointer)[0] if self.doc is not None else None

    @property
    def column(self) -> int | None:
        return self.doc.position(self.pointer)[1] if self.doc is not None else None


def _token_content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def config_decls(doc: JsonDoc, level: str, text_space_top: bool) -> list[SpecialDecl]:
    out = []
    for scope in scopes(doc):
        for role in ROLES:
            key = f"{role}_token_id"
            ids = scope.get_ids(key)
            if not ids:
                continue
            out.append(_decl_from_scope(scope, role, key, ids, level, text_space_top and not scope.name))
    return out


def _decl_from_scope(
    scope: ConfigScope, role: str, key: str, ids: tuple[int, ...], level: str, text_space: bool
) -> SpecialDecl:
    pointer = scope.pointer(key)
    name = f"{level} ({scope.name})" if scope.name else level
    return SpecialDecl(role, ids, None, name, scope.doc.path, pointer, scope.doc, text_space, scope.name)


def tokenizer_decls(bundle: TokenizerBundle) -> list[SpecialDecl]:
    """The special tokens the tokenizer files declare. Without `added_tokens_decoder` in tokenizer_config.json (a
    legacy or hand-written config), transformers (4.34+ and 5.x, `PreTrainedTokenizerBase._from_pretrained`) lets a
    role special_tokens_map.json declares replace tokenizer_config.json's: that declaration of tokenizer_config.json
    is never used and is left out (SGT-Cho/Dia1.6bFineTuning's tokenizer_config.json names `<pad>`, `<s>`, `</s>`,
    `<unk>`; its special_tokens_map.json names Whisper's `<|endoftext|>` for all four, and that is what loads). With
    `added_tokens_decoder` transformers skips special_tokens_map.json (checked on 5.23: NuExtract's map says eos
    `<|endoftext|>`, its tokenizer_config.json `<|end-output|>`, and the latter loads); other tools may still read it,
    so its declarations stay, marked `unread`."""
    out = []
    config_data = bundle.config.data if bundle.config is not None else None
    map_data = bundle.special_map.data if bundle.special_map is not None else None
    skips_map = isinstance(config_data, dict) and isinstance(config_data.get("added_tokens_decoder"), dict)
    legacy = isinstance(config_data, dict) and not skips_map
    overridden = (
        {role for role in ROLES if _token_content(map_data.get(f"{role}_token")) is not None}
        if legacy and isinstance(map_data, dict)
        else set()
    )
    for doc, level in ((bundle.config, "tokenizer_config.json"), (bundle.special_map, "special_tokens_map.json")):
        if doc is None or not isinstance(doc.data, dict):
            continue
        for role in ROLES:
            key = f"{role}_token"
            content = _token_content(doc.data.get(key))
            if content is None or (level == "tokenizer_config.json" and role in overridden):
                continue
            resolved = bundle.resolve(content)
            pointer = "/" + escape_pointer_part(key)
            ids = () if resolved is None else (resolved,)
            unread = skips_map and level == "special_tokens_map.json"
            out.append(SpecialDecl(role, ids, content, level, doc.path, pointer, doc, True, unread=unread))
    return out
