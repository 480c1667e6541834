"""Tensor metadata as the readers produce it: dtype tables, TensorInfo, WeightFile, Weights.

The data the weight readers (weights.py for safetensors, pickles.py for torch checkpoints, gguf_file.py)
fill in and the rules read; it imports no reader, so the readers import it without a cycle.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError

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


class TensorInfo(msgspec.Struct, frozen=True):
    name: str
    dtype: str
    shape: tuple[int, ...]
    path: str
    data_start: int | None = None  # absolute byte offset in `path` (safetensors only)
    data_end: int | None = None

    @property
    def rows(self) -> int | None:
        return self.shape[0] if self.shape else None


class WeightFile(msgspec.Struct):
    path: str
    format: str  # "safetensors" | "torch-zip" | "torch-legacy" | "pickle"
    tensors: dict[str, TensorInfo]
    metadata: dict[str, Any] = {}
    pickle_globals: tuple[tuple[str, str], ...] = ()  # every global a pickle names, in order
    pickle_members: tuple[str, ...] = ()  # which pickles of the file were read (torch's choice first)
    ambiguities: tuple[str, ...] = ()  # ways in which torch and other readers may see different pickles
    unchecked: tuple[str, ...] = ()  # what ttsdoctor could not rebuild (torch may), and so was not checked
    damaged: tuple[str, ...] = ()  # pickles that torch cannot read either (no STOP, invalid opcodes)

    def without_data(self) -> WeightFile:
        """The same header with no data offsets: a header read without its data (a Hub file checked remotely),
        which rules that read rows then skip."""
        tensors = {name: TensorInfo(t.name, t.dtype, t.shape, t.path) for name, t in self.tensors.items()}
        return msgspec.structs.replace(self, tensors=tensors)

    @property
    def unsafe_globals(self) -> tuple[tuple[str, str], ...]:
        """The globals beyond tensor rebuilding (each once, first seen first): SEC001 reports them, fix refuses."""
        return tuple(dict.fromkeys(g for g in self.pickle_globals if g not in SAFE_PICKLE_GLOBALS))


class Weights(msgspec.Struct):
    files: list[WeightFile] = []  # what transformers would load
    index_path: str | None = None
    errors: list[ArtifactError] = []
    # other pickle files beside them (optimizer.pt, rng_state.pth, training_args.bin): read for security only
    extras: list[WeightFile] = []

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        out: dict[str, TensorInfo] = {}
        for wf in self.files:
            out.update(wf.tensors)
        return out
