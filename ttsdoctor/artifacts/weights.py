"""Weights, read from headers only: tensor names, dtypes, shapes and byte ranges.

- safetensors: the 8-byte length, the JSON header, every offset validated against the file size;
- sharded checkpoints through `*.safetensors.index.json`;
- pickle checkpoints (.pt/.pth/.bin/.ckpt) through `pickles.py`, which imports and calls nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from ttsdoctor.artifacts.errors import ArtifactError, regular_file_size
from ttsdoctor.artifacts.jsonfile import load_json

MAX_HEADER_BYTES = 100 << 20  # the safetensors library refuses larger headers too

DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "F4": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}

TORCH_STORAGE_DTYPES = {
    "FloatStorage": "F32",
    "DoubleStorage": "F64",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
    "ComplexFloatStorage": "C64",
}

# Globals that only rebuild tensors and containers. Anything else in a pickle is reported.
SAFE_PICKLE_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.nn.parameter", "Parameter"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("torch", "dtype"),
    }
    | {("torch", name) for name in TORCH_STORAGE_DTYPES}
    | {("torch", name) for name in ("float32", "float16", "bfloat16", "int64", "int32", "bool", "uint8")}
)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    path: str
    data_start: int | None = None  # absolute byte offset in `path` (safetensors only)
    data_end: int | None = None

    @property
    def rows(self) -> int | None:
        return self.shape[0] if self.shape else None


@dataclass
class WeightFile:
    path: str
    format: str  # "safetensors" | "torch-zip" | "torch-legacy" | "pickle"
    tensors: dict[str, TensorInfo]
    metadata: dict[str, Any] = field(default_factory=dict)
    pickle_globals: tuple[tuple[str, str], ...] = ()  # every global a pickle names, in order

    @property
    def unsafe_globals(self) -> tuple[tuple[str, str], ...]:
        """The globals beyond tensor rebuilding (each once, first seen first): SEC001 reports them, fix refuses."""
        return tuple(dict.fromkeys(g for g in self.pickle_globals if g not in SAFE_PICKLE_GLOBALS))


@dataclass
class Weights:
    files: list[WeightFile] = field(default_factory=list)
    index_path: str | None = None
    errors: list[ArtifactError] = field(default_factory=list)

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        out: dict[str, TensorInfo] = {}
        for wf in self.files:
            out.update(wf.tensors)
        return out


# --- safetensors ---------------------------------------------------------------------------------


def read_safetensors_header(path: str) -> WeightFile:
    size = regular_file_size(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ArtifactError(
                    path, f"truncated safetensors file: {size} bytes, not even the 8-byte header length"
                )
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise ArtifactError(path, f"safetensors header length {n} is above the {MAX_HEADER_BYTES}-byte limit")
            if 8 + n > size:
                raise ArtifactError(
                    path, f"safetensors header length {n} points past the end of the file ({size} bytes)"
                )
            raw = fh.read(n)
    except PermissionError:
        raise ArtifactError(path, "permission denied") from None
    except FileNotFoundError:
        raise ArtifactError(path, "file not found") from None
    except IsADirectoryError:
        raise ArtifactError(path, "is a directory where a file is expected") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(path, f"safetensors header is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ArtifactError(path, "safetensors header is not a JSON object")
    data_size = size - 8 - n
    base = 8 + n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ArtifactError(path, "safetensors __metadata__ is not an object")
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise ArtifactError(path, f"tensor {name!r}: header entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            raise ArtifactError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
        if not (
            isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise ArtifactError(path, f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise ArtifactError(path, f"tensor {name!r}: data_offsets {offsets!r} is not a pair of integers")
        begin, end = offsets
        numel = 1
        for d in shape:
            numel *= d
        expected = numel * DTYPE_SIZES[dtype]
        if not 0 <= begin <= end:
            raise ArtifactError(path, f"tensor {name!r}: data_offsets {offsets} are out of order")
        if end > data_size:
            raise ArtifactError(
                path,
                f"tensor {name!r}: data_offsets end {end} is past the end of the data "
                f"({data_size} bytes): the file is truncated",
            )
        if end - begin != expected:
            raise ArtifactError(
                path, f"tensor {name!r}: {end - begin} bytes for shape {shape} {dtype}, expected {expected}"
            )
        spans.append((begin, end, name))
        tensors[name] = TensorInfo(name, dtype, tuple(shape), path, base + begin, base + end)
    spans.sort()
    for (_b1, e1, n1), (b2, _e2, n2) in itertools.pairwise(spans):
        if b2 < e1:
            raise ArtifactError(path, f"tensors {n1!r} and {n2!r} overlap in the data section")
    return WeightFile(
        path=path,
        format="safetensors",
        tensors=tensors,
        metadata={k: v for k, v in metadata.items() if isinstance(v, str)},
    )


def load_sharded_safetensors(index_path: str) -> Weights:
    weights = Weights(index_path=index_path)
    doc = load_json(index_path)
    weight_map = doc.data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise ArtifactError(index_path, "has no weight_map object")
    directory = os.path.dirname(index_path)
    shards: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise ArtifactError(index_path, f"weight_map[{tensor!r}] is not a file name")
        shards.setdefault(shard, []).append(tensor)
    for shard, names in shards.items():
        shard_path = os.path.join(directory, shard)
        if os.path.isabs(shard) or ".." in shard.replace("\\", "/").split("/"):
            weights.errors.append(ArtifactError(index_path, f"shard name {shard!r} leaves the model directory"))
            continue
        if not os.path.lexists(shard_path):
            weights.errors.append(ArtifactError(index_path, f"names shard {shard!r} which does not exist"))
            continue
        try:
            wf = read_safetensors_header(shard_path)
        except ArtifactError as exc:
            weights.errors.append(exc)
            continue
        missing = [n for n in names if n not in wf.tensors]
        if missing:
            weights.errors.append(
                ArtifactError(
                    index_path, f"{len(missing)} tensors mapped to {shard!r} are not in it, for example {missing[0]!r}"
                )
            )
        weights.files.append(wf)
    return weights


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def load_weight_file(path: str) -> WeightFile:
    if path.endswith(".safetensors"):
        return read_safetensors_header(path)
    from ttsdoctor.artifacts.pickles import read_pickle_checkpoint  # pickle machinery only for pickles

    return read_pickle_checkpoint(path)


def load_weights_in_dir(directory: str, names: list[str]) -> Weights | None:
    """The weights of a model directory: the sharded index if any, else every weight file."""
    index = [n for n in names if n.endswith(".safetensors.index.json")]
    if index:
        path = os.path.join(directory, sorted(index)[0])
        try:
            return load_sharded_safetensors(path)
        except ArtifactError as exc:
            return Weights(index_path=path, errors=[exc])
    files = sorted(n for n in names if n.endswith(WEIGHT_SUFFIXES) and not n.startswith("training_args"))
    safes = [n for n in files if n.endswith(".safetensors")]
    chosen = safes or files  # transformers prefers safetensors when both exist
    if not chosen:
        return None
    weights = Weights()
    for name in chosen:
        try:
            weights.files.append(load_weight_file(os.path.join(directory, name)))
        except ArtifactError as exc:
            weights.errors.append(exc)
    return weights


# --- which files the fix engine may rewrite -------------------------------------------------------

RESIZABLE_DTYPES = ("F32", "F16", "BF16", "F64")


def resizable(tensor: TensorInfo, weights: Weights | None) -> bool:
    """Whether `fix` can grow this tensor's first dimension.

    safetensors files are rewritten from their header; a pickle checkpoint only when it is a torch zip whose
    pickle names nothing but tensor-rebuilding globals (what `torch.load(weights_only=True)` accepts).
    """
    if len(tensor.shape) not in (1, 2) or tensor.dtype not in RESIZABLE_DTYPES or weights is None:
        return False
    if tensor.path.endswith(".safetensors"):
        return True
    source = next((wf for wf in weights.files if wf.path == tensor.path), None)
    return source is not None and pickle_rewrite_refusal(source) is None


def pickle_rewrite_refusal(source: WeightFile) -> str | None:
    """Why `fix` will not rewrite this pickle checkpoint, or None when it may."""
    if source.format != "torch-zip":
        return "is a legacy pickle checkpoint: re-save it with torch.save to resize it"
    if not source.pickle_globals:
        return "holds no tensors"
    unsafe = source.unsafe_globals
    if unsafe:
        return f"pickles more than tensors ({', '.join(f'{m}.{n}' for m, n in sorted(unsafe)[:3])}): not rewritten"
    return None


# --- which tensors hold the text vocabulary --------------------------------------------------

EMBEDDING_SUFFIXES = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "tok_embeddings.weight",
    "text_emb.weight",
    "text_embedding.weight",
    "token_embd.weight",
    "shared.weight",
    "embed_in.weight",
    "text_embed.weight",
    "embedding.weight",
)
HEAD_SUFFIXES = ("lm_head.weight", "text_head.weight", "embed_out.weight", "output.weight")
NOT_TEXT_MARKERS = (
    "speech",
    "audio",
    "mel_",
    "codec",
    "position",
    "pos_emb",
    "wpe",
    "cond_",
    "speaker",
    "vision",
    "decoder.embed_tokens.",
    "embed_positions",
    "perceiver",
    "resps",
)


def _pick(tensors: dict[str, TensorInfo], suffixes: tuple[str, ...]) -> TensorInfo | None:
    candidates = []
    for name, info in tensors.items():
        if len(info.shape) != 2:
            continue
        lowered = name.lower()
        if any(marker in lowered for marker in NOT_TEXT_MARKERS):
            continue
        for rank, suffix in enumerate(suffixes):
            if name == suffix or name.endswith("." + suffix) or name.endswith("_" + suffix):
                candidates.append((name.count("."), rank, name, info))
                break
    if not candidates:
        return None
    return min(candidates)[3]


def text_embedding(tensors: dict[str, TensorInfo]) -> TensorInfo | None:
    """The input embedding of the text/main vocabulary, found by name."""
    return _pick(tensors, EMBEDDING_SUFFIXES)


def text_head(tensors: dict[str, TensorInfo]) -> TensorInfo | None:
    """The output head over the same vocabulary, found by name."""
    return _pick(tensors, HEAD_SUFFIXES)


def head_bias(tensors: dict[str, TensorInfo], head: TensorInfo | None) -> TensorInfo | None:
    """The 1-D bias next to the head weight (XTTS: gpt.text_head.bias), which has a row per id too."""
    if head is None or not head.name.endswith(".weight"):
        return None
    bias = tensors.get(head.name[: -len("weight")] + "bias")
    return bias if bias is not None and len(bias.shape) == 1 else None
