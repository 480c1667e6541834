"""GGUF files (llama.cpp: OuteTTS, Orpheus ... GGUF): metadata and tensor infos, read with the `gguf` package.

The file is memory-mapped and only its header is parsed; tensor data is never touched. It becomes a
ModelDir (tokenizer from the token list, special ids from metadata, tensors with rows first), so the
token, vocabulary and codec rules apply to it as to a Hugging Face directory.
"""

from __future__ import annotations

import os
from typing import Any

from ttsdoctor.artifacts.errors import ArtifactError, refuse_lfs_pointer, regular_file_size
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.special_tokens import SpecialDecl
from ttsdoctor.artifacts.tokenizer import TokenizerBundle, TokenizerFile
from ttsdoctor.artifacts.weights import TensorInfo, WeightFile, Weights
from ttsdoctor.families import detect_family

# llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
SPECIAL_TYPES = (2, 3, 4, 5)
ADDED_TYPES = (3, 4)
ROLE_KEYS = (
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
)


def _scalar(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    return value.tolist()[0] if hasattr(value, "tolist") else value


def load_gguf(path: str) -> ModelDir:
    model = ModelDir(path=path, names=[os.path.basename(path)])
    try:
        refuse_lfs_pointer(path, regular_file_size(path))
        from gguf import GGUFReader

        reader = GGUFReader(path)
    except ArtifactError as exc:
        model.errors.append(exc)
        return model
    except Exception as exc:  # the gguf package raises ValueError, struct.error, IndexError ... on bad files
        model.errors.append(ArtifactError(path, f"not a readable GGUF file ({type(exc).__name__}: {exc})"[:300]))
        return model
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    if tokens_field is not None:
        tokens = [bytes(tokens_field.parts[i]).decode("utf-8", errors="replace") for i in tokens_field.data]
        types_field = reader.fields.get("tokenizer.ggml.token_type")
        types = [int(types_field.parts[i][0]) for i in types_field.data] if types_field is not None else []
        special = frozenset(i for i, t in enumerate(types) if t in SPECIAL_TYPES)
        added = {i: tokens[i] for i, t in enumerate(types) if t in ADDED_TYPES}
        vocab: dict[str, int] = {}
        for i, token in enumerate(tokens):
            vocab.setdefault(token, i)
        file = TokenizerFile(path=path, kind="gguf", max_id=len(tokens) - 1, special=special, added=added, _vocab=vocab)
        model.tokenizer = TokenizerBundle(directory=os.path.dirname(path), file=file)
        for role, key in ROLE_KEYS:
            value = _scalar(reader, key)
            if isinstance(value, int):
                model.extra_decls.append(
                    SpecialDecl(role, (value,), None, "GGUF metadata", path, f"/{key}", None, None, True)
                )
    tensors = {}
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(list(t.shape)))  # GGUF stores ne[0] (the row width) first
        tensors[t.name] = TensorInfo(t.name, getattr(t.tensor_type, "name", str(t.tensor_type)), shape, path)
    model.weights = Weights(files=[WeightFile(path=path, format="gguf", tensors=tensors)])
    arch = _scalar(reader, "general.architecture")
    arch_name = bytes(arch).decode() if isinstance(arch, (bytes, bytearray)) else None
    model.family, model.family_detection = detect_family(
        arch_name, (), model.tokenizer.file if model.tokenizer else None, tuple(tensors)
    )
    return model
