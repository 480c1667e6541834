"""config.json and generation_config.json: typed access to the keys rules compare.

A config can hold sub-configs (text_config, decoder, audio_encoder, talker_config ...). Each is a
`ConfigScope` with its own JSON pointer prefix, so findings point at the exact key.
Wrong types (a string vocab_size, a list where an id is expected) are recorded on the document as
problems at load time and read as absent by rules.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.artifacts.jsonfile import JsonDoc, escape_pointer_part, load_json

ID_KEYS = ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id", "decoder_start_token_id")
LIST_ID_KEYS = ("eos_token_id",)  # transformers accepts an int or a list for these
INT_KEYS = (
    "vocab_size",
    "hidden_size",
    "max_position_embeddings",
    "n_positions",
    "num_hidden_layers",
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "top_k",
    "num_beams",
    "num_codebooks",
    "codebook_size",
    "n_vocab",
    "text_vocab_size",
    "speech_vocab_size",
)
FLOAT_KEYS = ("temperature", "top_p", "repetition_penalty", "typical_p")
BOOL_KEYS = ("do_sample", "output_attentions", "tie_word_embeddings", "is_encoder_decoder", "use_cache")
_SCOPE_MARKERS = ("model_type", "vocab_size", *ID_KEYS)


class ConfigScope(msgspec.Struct, frozen=True):
    doc: JsonDoc
    prefix: str  # JSON pointer of this scope, "" at the top level
    name: str  # "" at the top level, else the key path ("decoder", "text_config")
    data: dict[str, Any]

    def pointer(self, key: str) -> str:
        return f"{self.prefix}/{escape_pointer_part(key)}"

    def has(self, key: str) -> bool:
        return key in self.data

    def get_int(self, key: str) -> int | None:
        value = self.data.get(key)
        return value if isinstance(value, int) and _sane_int(value) else None

    def get_number(self, key: str) -> float | None:
        value = self.data.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def get_ids(self, key: str) -> tuple[int, ...]:
        """An id key as a tuple: () when absent, null or of the wrong type."""
        value = self.data.get(key)
        if isinstance(value, int) and _sane_int(value):
            return (value,)
        if isinstance(value, list) and all(_sane_int(v) for v in value):
            return tuple(value)
        return ()

    def get_str(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) else None

    @property
    def label(self) -> str:
        return f"{self.doc.path}" + (f" ({self.name})" if self.name else "")


def scopes(doc: JsonDoc, max_depth: int = 3) -> list[ConfigScope]:
    """The top level and every nested object that looks like a model config."""
    out = [ConfigScope(doc, "", "", doc.data)]

    def walk(obj: dict[str, Any], prefix: str, name: str, depth: int) -> None:
        if depth >= max_depth:
            return
        for key, value in obj.items():
            if isinstance(value, dict):
                child_prefix = f"{prefix}/{escape_pointer_part(key)}"
                child_name = f"{name}.{key}" if name else key
                if any(marker in value for marker in _SCOPE_MARKERS):
                    out.append(ConfigScope(doc, child_prefix, child_name, value))
                walk(value, child_prefix, child_name, depth + 1)

    walk(doc.data, "", "", 0)
    return out


def is_input_encoder(scope_name: str) -> bool:
    """A sub-config of an encoder that feeds the model (Ultravox's Whisper `audio_config`, LLaVA's `vision_config`,
    Parler-TTS's `text_encoder`): it generates nothing, and its special ids are those of its own tokenizer."""
    last = scope_name.rsplit(".", 1)[-1]
    return last in ("audio_config", "vision_config") or ("encoder" in last and "decoder" not in last)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {"str": "a string", "list": "a list", "dict": "an object", "float": "a float", "int": "an integer"}.get(
        type(value).__name__, type(value).__name__
    )


# Ids and sizes beyond this are no vocabulary, length or id of any model (the largest vocabularies are ~1e6 and
# context lengths ~1e7); reading them as numbers would overflow tokenizers' and numpy's 64-bit integers.
MAX_SANE_INT = 1 << 40


def _sane_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_SANE_INT <= value <= MAX_SANE_INT


def validate_types(doc: JsonDoc) -> None:
    """Record wrong-typed known keys as problems on the document (load time, once)."""
    for scope in scopes(doc):
        for key, value in scope.data.items():
            pointer = scope.pointer(key)
            if key in ID_KEYS or key in INT_KEYS:
                if value is None:
                    continue
                ok = isinstance(value, int) and not isinstance(value, bool)
                if key in LIST_ID_KEYS and isinstance(value, list):
                    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                if not ok:
                    want = "an integer or a list of integers" if key in LIST_ID_KEYS else "an integer"
                    doc.problems.append((pointer, f"{key} is {_type_name(value)} ({value!r:.40}), expected {want}"))
                elif not all(_sane_int(v) for v in (value if isinstance(value, list) else [value])):
                    doc.problems.append((pointer, f"{key} is {str(value)[:40]}: beyond any vocabulary, id or size"))
                elif key in ID_KEYS and any(v < 0 for v in scope.get_ids(key)):
                    doc.problems.append((pointer, f"{key} is negative ({value!r:.40})"))
            elif key in FLOAT_KEYS and value is not None:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    doc.problems.append((pointer, f"{key} is {_type_name(value)} ({value!r:.40}), expected a number"))
            elif key in BOOL_KEYS and value is not None and not isinstance(value, bool):
                doc.problems.append((pointer, f"{key} is {_type_name(value)} ({value!r:.40}), expected true or false"))


def load_config(path: str) -> JsonDoc:
    try:
        doc = load_json(path, budget="config_json_bytes")
    except ArtifactError as exc:
        doc = _with_comments(path, exc)
    validate_types(doc)
    return doc


def _with_comments(path: str, error: ArtifactError) -> JsonDoc:
    """A config.json with // comments (Coqui TTS / VITS-style toolkits strip them in their loader): read it, and
    say so; transformers' json.load would reject it. Any other invalid JSON raises the original error."""
    from ttsdoctor.artifacts.errors import decode_utf8, read_bytes
    from ttsdoctor.artifacts.jsonfile import parse_json_text, strip_json_comments

    if not error.problem.startswith("invalid JSON"):
        raise error
    text = decode_utf8(path, read_bytes(path, "config_json_bytes"))
    stripped = strip_json_comments(text)
    if stripped is None:
        raise error
    try:
        doc = parse_json_text(path, stripped)
    except ArtifactError:
        raise error from None
    if not isinstance(doc.data, dict):
        raise error
    hf = "model_type" in doc.data or "architectures" in doc.data
    doc.problems.append(
        (
            "",
            "comments (// or /* */) or trailing commas in JSON: transformers' json.load rejects this config.json"
            if hf
            else "not standard JSON: // or /* */ comments or trailing commas, read as a toolkit that strips them "
            "reads it",
        )
    )
    return doc  # its text is the stripped one: comments blanked, so every offset and line is the file's
