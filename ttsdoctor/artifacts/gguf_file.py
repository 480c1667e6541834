"""GGUF files (llama.cpp: OuteTTS, Orpheus ... GGUF): metadata and tensor infos, read under budgets.

Our own reader of the GGUF header (format versions 2 and 3, either byte order): the metadata keys,
the token list and types, the tensor infos. Arrays nobody needs are skipped without being decoded;
every count, length and offset is checked against the file's size and the budgets in limits.py
before anything is allocated, so a hostile header (an array of 10^12 items, a string past the end)
is a finding in milliseconds. Tensor data is never read. The result is a ModelDir (tokenizer from
the token list, special ids from metadata, tensors with rows first), so the token, vocabulary and
codec rules apply to it as to a Hugging Face directory.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError, refuse_missing_content, regular_file_size
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.special_tokens import SpecialDecl
from ttsdoctor.artifacts.tensors import TensorInfo, WeightFile, Weights
from ttsdoctor.artifacts.tokenizer import TokenizerBundle, TokenizerFile
from ttsdoctor.families import detect_family
from ttsdoctor.limits import limit, over

# llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
SPECIAL_TYPES = (2, 3, 4, 5)
ADDED_TYPES = (3, 4)
ROLE_KEYS = (
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
)
MAGIC = b"GGUF"
STRING, ARRAY = 8, 9
# value type -> struct format of one item (strings and arrays are read apart)
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
DECODED_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")
# ggml tensor types (ggml.h): name, elements per block, bytes per block
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}  # fmt: skip


class GgufHeader(msgspec.Struct):
    version: int
    metadata: dict[str, Any] = {}  # scalars and strings; decoded arrays as lists
    arrays: dict[str, tuple[int, int]] = {}  # skipped arrays: key -> (item type, count)
    tensors: dict[str, TensorInfo] = {}


class NeedMore(Exception):
    """The header goes on past the bytes read so far (a prefix of a remote file): read up to `end` at least."""

    def __init__(self, end: int):
        super().__init__(end)
        self.end = end


class _Cursor:
    def __init__(self, path: str, buf: Any, order: str, file_size: int | None = None):
        self.path, self.buf, self.order, self.pos = path, buf, order, 0
        self.size = len(buf)  # the bytes at hand: the whole file, or a prefix of a file of `file_size` bytes
        self.file_size = len(buf) if file_size is None else file_size

    def fail(self, problem: str) -> ArtifactError:
        return ArtifactError(self.path, f"GGUF header at byte {self.pos}: {problem}")

    def past_end(self, end: int, problem: str) -> ArtifactError | NeedMore:
        """Reading up to `end` goes past the bytes at hand: more of a prefix is needed, or the file is truncated."""
        if self.size < end <= self.file_size:
            return NeedMore(end)
        return self.fail(problem)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.past_end(
                self.pos + max(n, 0),
                f"{what} needs {n} bytes, past the end of the {self.file_size}-byte file (truncated?)",
            )

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        value = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self, what: str) -> str:
        n = self.unpack("Q", f"the length of {what}")
        if n > limit("gguf_string_bytes"):
            raise self.fail(f"{what} is " + over("gguf_string_bytes", n))
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def strings(self, count: int, what: str, keep: bool = True) -> list[str]:
        """`count` strings in a row (the token list: the one hot loop of the reader, kept tight)."""
        unpack, buf, pos, end = struct.Struct(self.order + "Q").unpack_from, self.buf, self.pos, self.size
        out: list[str] = []
        append = out.append
        for _ in range(count):
            if pos + 8 > end:
                self.pos = pos
                raise self.past_end(pos + 8, f"{what} ends past the end of the {self.file_size}-byte file (truncated?)")
            n = unpack(buf, pos)[0]
            pos += 8
            if pos + n > end:
                self.pos = pos
                raise self.past_end(
                    pos + n,
                    f"a string of {what} needs {n} bytes, past the end of the {self.file_size}-byte file (truncated?)",
                )
            if keep:
                append(str(buf[pos : pos + n], "utf-8", "replace"))
            pos += n
        self.pos = pos
        return out


def _value(cur: _Cursor, vtype: int, key: str, decode_arrays: bool) -> tuple[Any, tuple[int, int] | None]:
    if vtype in SCALARS:
        return cur.unpack(SCALARS[vtype], key), None
    if vtype == STRING:
        return cur.string(key), None
    if vtype != ARRAY:
        raise cur.fail(f"{key} has unknown value type {vtype}")
    itype = cur.unpack("I", f"the item type of {key}")
    count = cur.unpack("Q", f"the length of {key}")
    if count > limit("gguf_array_items"):
        raise cur.fail(f"{key} holds " + over("gguf_array_items", count))
    if itype in SCALARS:
        width = struct.calcsize(SCALARS[itype])
        cur.need(count * width, f"{key} ({count} items)")
        if not decode_arrays:
            cur.pos += count * width
            return None, (itype, count)
        items = list(struct.unpack_from(f"{cur.order}{count}{SCALARS[itype]}", cur.buf, cur.pos))
        cur.pos += count * width
        return items, None
    if itype == STRING:
        cur.need(count * 8, f"{key} ({count} strings)")  # every string has at least its 8-byte length
        if not decode_arrays:
            cur.strings(count, key, keep=False)
            return None, (itype, count)
        return cur.strings(count, key), None
    raise cur.fail(f"{key} is an array of type {itype}: nested arrays are not part of GGUF metadata")


def read_gguf_header(path: str) -> GgufHeader:
    size = regular_file_size(path)
    refuse_missing_content(path, size)
    if size < 24:
        raise ArtifactError(path, f"not a GGUF file: {size} bytes, shorter than a GGUF header")
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(path, buf)
    except (OSError, ValueError) as exc:
        raise ArtifactError(path, f"cannot read: {exc}") from None


def parse_prefix(path: str, prefix: bytes, file_size: int) -> GgufHeader:
    """The header of a GGUF file of `file_size` bytes from its first bytes; NeedMore when they do not hold it all."""
    if len(prefix) < 24 <= file_size:
        raise NeedMore(24)
    return _parse(path, prefix, file_size)


def _parse(path: str, buf: Any, file_size: int | None = None) -> GgufHeader:
    if bytes(buf[:4]) != MAGIC:
        raise ArtifactError(path, f"not a GGUF file: starts with {bytes(buf[:4])!r}, not b'GGUF'")
    order = "<"
    version = struct.unpack_from("<I", buf, 4)[0]
    if version & 0xFFFF == 0:  # written on a big-endian machine
        order, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in (2, 3):
        raise ArtifactError(path, f"GGUF version {version} is not supported (2 and 3 are)")
    cur = _Cursor(path, buf, order, file_size)
    cur.pos = 8
    n_tensors = cur.unpack("Q", "the tensor count")
    n_kv = cur.unpack("Q", "the metadata count")
    if n_kv > limit("gguf_kv"):
        raise cur.fail("the metadata count is " + over("gguf_kv", n_kv))
    if n_tensors > limit("gguf_tensors"):
        raise cur.fail("the tensor count is " + over("gguf_tensors", n_tensors))
    header = GgufHeader(version)
    for _ in range(n_kv):
        key = cur.string("a metadata key")
        vtype = cur.unpack("I", f"the type of {key}")
        value, skipped = _value(cur, vtype, key, key in DECODED_ARRAYS)
        if skipped is not None:
            header.arrays[key] = skipped
        else:
            header.metadata[key] = value
    alignment = header.metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise cur.fail(f"general.alignment {alignment!r} is not a power of two")
    infos = []
    seen: set[str] = set()
    for _ in range(n_tensors):
        name = cur.string("a tensor name")
        n_dims = cur.unpack("I", f"the dimension count of {name}")
        if n_dims > 8:
            raise cur.fail(f"tensor {name} has {n_dims} dimensions (ggml has at most 4)")
        dims = [cur.unpack("Q", f"a dimension of {name}") for _ in range(n_dims)]
        ggml_type = cur.unpack("I", f"the type of {name}")
        offset = cur.unpack("Q", f"the data offset of {name}")
        if name in seen:
            raise cur.fail(f"tensor {name} is listed twice")
        seen.add(name)
        infos.append((name, dims, ggml_type, offset))
    data_start = -(-cur.pos // alignment) * alignment
    for name, dims, ggml_type, offset in infos:
        type_name, block, type_size = GGML_TYPES.get(ggml_type, (f"type{ggml_type}", 0, 0))
        elements = 1
        for d in dims:
            elements *= d
        if block and data_start + offset + elements // block * type_size > cur.file_size:
            raise ArtifactError(
                path,
                f"tensor {name} ({type_name}, {dims}) lies past the end of the {cur.file_size}-byte file (truncated?)",
            )
        shape = tuple(reversed(dims))  # GGUF stores ne[0] (the row width) first
        header.tensors[name] = TensorInfo(name, type_name, shape, path)
    return header


def load_gguf(path: str) -> ModelDir:
    model = ModelDir(path=path, names=[os.path.basename(path)])
    try:
        header = read_gguf_header(path)
    except ArtifactError as exc:
        model.errors.append(exc)
        return model
    meta = header.metadata
    model.gguf_metadata = meta
    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list):
        raw_types = meta.get("tokenizer.ggml.token_type")
        types = raw_types if isinstance(raw_types, list) else []
        special = frozenset(i for i, t in enumerate(types) if t in SPECIAL_TYPES)
        added = {i: tokens[i] for i, t in enumerate(types) if t in ADDED_TYPES and i < len(tokens)}
        vocab: dict[str, int] = {}
        for i, token in enumerate(tokens):
            vocab.setdefault(token, i)
        file = TokenizerFile.of_vocab(path, "gguf", vocab, special, added, max_id=len(tokens) - 1)
        model.tokenizer = TokenizerBundle(directory=os.path.dirname(path), file=file)
        for role, key in ROLE_KEYS:
            value = meta.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                model.extra_decls.append(
                    SpecialDecl(role, (value,), None, "GGUF metadata", path, f"/{key}", None, True)
                )
    model.weights = Weights(files=[WeightFile(path=path, format="gguf", tensors=header.tensors)])
    arch = meta.get("general.architecture")
    model.family, model.family_detection = detect_family(
        arch if isinstance(arch, str) else None,
        (),
        model.tokenizer.file if model.tokenizer else None,
        tuple(header.tensors),
    )
    return model
