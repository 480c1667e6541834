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

from ttsdoctor.artifacts.errors import ArtifactError, refuse_lfs_pointer, regular_file_size
from ttsdoctor.artifacts.jsonfile import load_json
from ttsdoctor.limits import limit, over

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

# Globals that only rebuild tensors and containers: what torch.load(weights_only=True) accepts (torch 2.13's
# `_get_allowed_globals`), plus frozenset, slice and torch.dtype. Anything else in a pickle is reported.
_TENSOR_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
_TORCH_DTYPES = [
    "bfloat16",
    "bits16",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bool",
    "complex128",
    "complex32",
    "complex64",
    "float16",
    "float32",
    "float64",
    "float4_e2m1fn_x2",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e5m2",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "qint32",
    "qint8",
    "quint2x4",
    "quint4x2",
    "quint8",
    "per_channel_affine",
    "per_channel_affine_float_qparams",
    "per_channel_symmetric",
    "per_tensor_affine",
    "per_tensor_symmetric",
    "Size",
    "Tensor",
    "device",
    "dtype",
    "half",
    "float",
    "double",
    "long",
    "int",
    "short",
] + [f"{kind}{bits}" for kind in ("int", "uint") for bits in (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)]
_REBUILDERS = [
    "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_nested_tensor",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_wrapper_subclass",
]
SAFE_PICKLE_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("collections", "Counter"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("torch.nn.parameter", "Parameter"),
        ("torch.serialization", "_get_layout"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.storage", "TypedStorage"),
        ("torch.storage", "UntypedStorage"),
    }
    | {("torch._utils", name) for name in _REBUILDERS}
    | {("torch", name) for name in _TORCH_DTYPES}
    | {("torch", name) for name in TORCH_STORAGE_DTYPES}
    | {("torch", f"{t}Storage") for t in (*_TENSOR_TYPES, "ComplexDouble", "ComplexFloat", "QInt32", "QInt8")}
    | {("torch", f"{t}Storage") for t in ("QUInt2x4", "QUInt4x2", "QUInt8")}
    | {
        (module, f"{t}{kind}")
        for module in ("torch", "torch.cuda")
        for t in _TENSOR_TYPES
        for kind in ("Tensor", "Storage")
    }
    | {(module, f"{t}Tensor") for module in ("torch.sparse", "torch.cuda.sparse") for t in _TENSOR_TYPES}
    | {("torch.cuda", "ComplexDoubleStorage"), ("torch.cuda", "ComplexFloatStorage")}
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
    pickle_members: tuple[str, ...] = ()  # which pickles of the file were read (torch's choice first)
    ambiguities: tuple[str, ...] = ()  # ways in which torch and other readers may see different pickles
    unchecked: tuple[str, ...] = ()  # what ttsdoctor could not rebuild (torch may), and so was not checked
    damaged: tuple[str, ...] = ()  # pickles that torch cannot read either (no STOP, invalid opcodes)

    @property
    def unsafe_globals(self) -> tuple[tuple[str, str], ...]:
        """The globals beyond tensor rebuilding (each once, first seen first): SEC001 reports them, fix refuses."""
        return tuple(dict.fromkeys(g for g in self.pickle_globals if g not in SAFE_PICKLE_GLOBALS))


@dataclass
class Weights:
    files: list[WeightFile] = field(default_factory=list)  # what transformers would load
    index_path: str | None = None
    errors: list[ArtifactError] = field(default_factory=list)
    # other pickle files beside them (optimizer.pt, rng_state.pth, training_args.bin): read for security only
    extras: list[WeightFile] = field(default_factory=list)

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        out: dict[str, TensorInfo] = {}
        for wf in self.files:
            out.update(wf.tensors)
        return out


# --- safetensors ---------------------------------------------------------------------------------


def read_safetensors_header(path: str) -> WeightFile:
    size = regular_file_size(path)
    refuse_lfs_pointer(path, size)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ArtifactError(
                    path, f"truncated safetensors file: {size} bytes, not even the 8-byte header length"
                )
            (n,) = struct.unpack("<Q", head)
            if n > limit("safetensors_header_bytes"):
                raise ArtifactError(path, f"safetensors header length {over('safetensors_header_bytes', n)}")
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
    listed = raw.count(b'"data_offsets"')  # one per tensor (an escaped quote inside a name cannot match)
    if listed > limit("safetensors_tensors"):  # refused before a slow parse of millions of entries
        raise ArtifactError(path, f"safetensors header lists {over('safetensors_tensors', listed)}")
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
    if len(header) > limit("safetensors_tensors"):
        raise ArtifactError(path, f"safetensors header lists {over('safetensors_tensors', len(header))}")
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():  # the hot loop of a large header: exact type checks, no generators
        if type(entry) is not dict:
            raise ArtifactError(path, f"tensor {name!r}: header entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if type(dtype) is not str or dtype not in DTYPE_SIZES:
            raise ArtifactError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
        numel = 1
        if type(shape) is not list:
            shape = None
        else:
            for d in shape:
                if type(d) is not int or d < 0:
                    shape = None
                    break
                numel *= d
        if shape is None:
            raise ArtifactError(
                path, f"tensor {name!r}: shape {entry.get('shape')!r} is not a list of non-negative integers"
            )
        if type(offsets) is not list or len(offsets) != 2 or type(offsets[0]) is not int or type(offsets[1]) is not int:
            raise ArtifactError(path, f"tensor {name!r}: data_offsets {offsets!r} is not a pair of integers")
        begin, end = offsets
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


PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _is_weight_name(directory: str, name: str) -> bool:
    if not name.endswith(WEIGHT_SUFFIXES):
        return False
    if not name.endswith(".bin"):
        return True
    from ttsdoctor.artifacts.pickles import looks_like_checkpoint  # many .bin files are raw data, not pickles

    return looks_like_checkpoint(os.path.join(directory, name))


def load_weights_in_dir(directory: str, names: list[str]) -> Weights | None:
    """The weights of a model directory: the sharded index if any, else every weight file (safetensors first,
    as transformers prefers them). Every other pickle file beside them is read too, for the security rules."""
    files = sorted(n for n in names if _is_weight_name(directory, n))
    index = [n for n in names if n.endswith(".safetensors.index.json")]
    if index:
        path = os.path.join(directory, sorted(index)[0])
        try:
            weights = load_sharded_safetensors(path)
        except ArtifactError as exc:
            weights = Weights(index_path=path, errors=[exc])
        chosen = {os.path.basename(wf.path) for wf in weights.files}
    else:
        safes = [n for n in files if n.endswith(".safetensors")]
        chosen_names = safes or [n for n in files if not n.startswith("training_args")]
        if not files:
            return None
        weights = Weights()
        for name in chosen_names:
            try:
                weights.files.append(load_weight_file(os.path.join(directory, name)))
            except ArtifactError as exc:
                weights.errors.append(exc)
        chosen = set(chosen_names)
    for name in files:
        if name in chosen or not name.endswith(PICKLE_SUFFIXES):
            continue
        try:
            weights.extras.append(load_weight_file(os.path.join(directory, name)))
        except ArtifactError as exc:
            weights.errors.append(exc)
    return weights


# --- which files the fix engine may rewrite -------------------------------------------------------

RESIZABLE_DTYPES = ("F32", "F16", "BF16", "F64")


def resizable(tensor: TensorInfo, weights: Weights | None) -> bool:
    """Whether `fix` can grow this tensor's first dimension."""
    return resize_refusal(tensor, weights) is None


def resize_refusal(tensor: TensorInfo, weights: Weights | None) -> str | None:
    """Why `fix` cannot grow this tensor's first dimension, or None when it can.

    safetensors files are rewritten from their header; a pickle checkpoint only when it is a torch zip whose
    pickle names nothing but tensor-rebuilding globals (what `torch.load(weights_only=True)` accepts).
    """
    name = os.path.basename(tensor.path)
    if len(tensor.shape) not in (1, 2) or tensor.dtype not in RESIZABLE_DTYPES:
        shape = f"{len(tensor.shape)}-D {tensor.dtype}"
        return f"{tensor.name} in {name} is {shape}: only 1-D and 2-D float tensors are resized"
    if weights is None:
        return f"{name} was not read"
    if tensor.path.endswith(".safetensors"):
        return None
    source = next((wf for wf in weights.files if wf.path == tensor.path), None)
    if source is None:
        return f"{name} was not read"
    if source.format == "gguf":
        return f"{name} is a GGUF file: fix the checkpoint it was converted from, then convert it again"
    refusal = pickle_rewrite_refusal(source)
    return f"{name} {refusal}" if refusal is not None else None


def pickle_rewrite_refusal(source: WeightFile) -> str | None:
    """Why `fix` will not rewrite this pickle checkpoint, or None when it may."""
    if source.format != "torch-zip":
        return "is a legacy pickle checkpoint: re-save it with torch.save to resize it"
    if not source.pickle_globals:
        return "holds no tensors"
    unsafe = source.unsafe_globals
    if unsafe:
        return (
            f"pickles more than tensors ({', '.join(f'{m}.{n}' for m, n in sorted(unsafe)[:3])}), and rewriting it "
            "means loading it: re-save it as a state dict or safetensors, then run fix again"
        )
    if source.unchecked or source.damaged or source.ambiguities:
        return "was not read completely (ART005, SEC005): it is not rewritten"
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
