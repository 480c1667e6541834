"""Pickle checkpoints (.pt/.pth/.bin/.ckpt: torch zip, legacy torch.save or raw pickle), read without running them.

A restricted unpickler never imports or calls anything: every global becomes an inert stub, so a
`__reduce__` that would run a shell command is recorded, not run. Tensors become names, dtypes and shapes.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from ttsdoctor.artifacts.errors import ArtifactError, regular_file_size
from ttsdoctor.artifacts.weights import TORCH_STORAGE_DTYPES, TensorInfo, WeightFile

MAX_PICKLE_BYTES = 256 << 20


LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a pre-zip torch.save file


class _Opaque:
    """What any call inside the pickle returns: inert, accepts anything, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


@dataclass(frozen=True)
class _Storage:
    dtype: str
    key: str
    numel: int


@dataclass(frozen=True)
class _Tensor:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


class _InertUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, tuples, scalars and tensor descriptions. Imports nothing."""

    def __init__(self, data: bytes):
        import io

        super().__init__(io.BytesIO(data))
        self.globals_seen: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        self.globals_seen.append((module, name))
        if module == "torch" and name in TORCH_STORAGE_DTYPES:
            return _Global(module, name)
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) in {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}:
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("torch._utils", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        return type(f"stub_{module}_{name}".replace(".", "_"), (_Opaque,), {})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, numel = pid[1], pid[2], pid[4]
            dtype = TORCH_STORAGE_DTYPES.get(storage_type.name, "?") if isinstance(storage_type, _Global) else "?"
            return _Storage(dtype, str(key), numel if isinstance(numel, int) else -1)
        return _Opaque()


def _rebuild_tensor(storage: Any, offset: Any = 0, size: Any = (), *args: Any) -> Any:
    dtype = storage.dtype if isinstance(storage, _Storage) else "?"
    shape = tuple(int(d) for d in size) if isinstance(size, (tuple, list)) else ()
    return _Tensor(dtype, shape)


def _rebuild_parameter(data: Any, *args: Any) -> Any:
    return data


def _flatten(obj: Any, prefix: str, out: dict[str, _Tensor], depth: int = 0) -> None:
    if depth > 12:
        return
    if isinstance(obj, _Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out, depth + 1)


def read_pickle_checkpoint(path: str) -> WeightFile:
    import zipfile  # ~5 ms: only for pickle checkpoints

    regular_file_size(path)
    fmt = "pickle"
    if zipfile.is_zipfile(path):
        fmt = "torch-zip"
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    raise ArtifactError(path, "zip checkpoint without a data.pkl record")
                info = zf.getinfo(names[0])
                if info.file_size > MAX_PICKLE_BYTES:
                    raise ArtifactError(path, f"data.pkl is {info.file_size} bytes, above the limit")
                payload = zf.read(names[0])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArtifactError(path, f"damaged zip checkpoint: {exc}") from None
    else:
        try:
            with open(path, "rb") as fh:
                payload = fh.read(MAX_PICKLE_BYTES)
        except OSError as exc:
            raise ArtifactError(path, f"cannot read: {exc.strerror or exc}") from None
    unpickler = _InertUnpickler(payload)
    try:
        obj = unpickler.load()
        if fmt == "pickle" and type(obj) is int and obj == LEGACY_TORCH_MAGIC:
            # torch.save before 1.6: magic, protocol version, sys info, then the object itself
            fmt = "torch-legacy"
            unpickler.load()
            unpickler.load()
            obj = unpickler.load()
    except RecursionError:
        raise ArtifactError(path, "pickle nested too deeply to read") from None
    except Exception as exc:  # a hostile or damaged stream can raise nearly anything
        if not unpickler.globals_seen:
            raise ArtifactError(path, f"not a readable pickle checkpoint ({type(exc).__name__}: {exc})"[:300]) from None
        obj = None
    tensors_raw: dict[str, _Tensor] = {}
    _flatten(obj, "", tensors_raw)
    tensors = {name: TensorInfo(name, t.dtype, t.shape, path) for name, t in tensors_raw.items()}
    return WeightFile(path=path, format=fmt, tensors=tensors, pickle_globals=tuple(unpickler.globals_seen))
