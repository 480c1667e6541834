"""Pickle checkpoints (.pt/.pth/.bin/.ckpt: torch zip, legacy torch.save or raw pickle), read without running them.

The bytes read are the bytes `torch.load` would unpickle, chosen the way torch chooses them:
- a torch zip only when the file starts with a zip local header (torch's `_is_zipfile`); the pickle is
  `<folder>/data.pkl`, where the folder is that of the archive's first entry and the name is matched
  case-insensitively (torch's miniz reader); duplicate names, a second data.pkl elsewhere, extra .pkl members
  and a zip hidden behind a raw pickle are ambiguities: every candidate is read and the ambiguity reported;
- otherwise a legacy tar archive when `tarfile` opens it, else a pickle stream from byte 0: one pickle, or the
  five of a pre-1.6 `torch.save` (magic number, protocol, sys info, the object, the storage keys).

Each pickle is read twice. A static pass over its opcodes (`pickle_scan`) lists every global it names, however
the reconstruction goes. A restricted unpickler then rebuilds it without importing or calling anything: every
global becomes an inert stub, so a `__reduce__` that would run a shell command is recorded, not run; tensors
become names, dtypes and shapes (state dicts with `_metadata`, nested training checkpoints, whole modules).
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import (
    LFS_POINTER_PREFIX,
    ArtifactError,
    refuse_missing_content,
    regular_file_size,
)
from ttsdoctor.artifacts.pickle_scan import python2_names, scan_pickle
from ttsdoctor.artifacts.tensors import TORCH_STORAGE_DTYPES, TensorInfo, WeightFile
from ttsdoctor.limits import limit, over

LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a pre-zip torch.save file
ZIP_LOCAL_HEADER = b"PK\x03\x04"
PICKLE_STARTS = (b"\x80",)  # protocol 2+; torch.save writes protocol 2


class _Opaque:
    """What any call inside the pickle returns: inert, accepts anything, does nothing but remember."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _Dict(dict):
    """OrderedDict / defaultdict stand-in: a state dict's `_metadata` attribute arrives through BUILD."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Storage(msgspec.Struct, frozen=True):
    dtype: str
    key: str
    numel: int


class _Tensor(msgspec.Struct, frozen=True):
    dtype: str
    shape: tuple[int, ...]


class _Global(msgspec.Struct, frozen=True):
    module: str
    name: str


_DICT_TYPES = {("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "Counter")}


class _InertUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, tuples, scalars, inert stubs and tensor descriptions. Imports nothing."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.globals_seen: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        module, name = python2_names(module, name)
        self.globals_seen.append((module, name))
        if module == "torch" and name in TORCH_STORAGE_DTYPES:
            return _Global(module, name)
        if (module, name) in _DICT_TYPES:
            return _Dict
        if (module, name) in {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}:
            return _rebuild_tensor
        if (module, name) in {
            ("torch._utils", "_rebuild_parameter"),
            ("torch._utils", "_rebuild_parameter_with_state"),
        }:
            return _rebuild_parameter
        if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
            return _rebuild_from_type
        return type(f"stub_{module}_{name}".replace(".", "_"), (_Opaque,), {})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, numel = pid[1], pid[2], pid[4]
            dtype = TORCH_STORAGE_DTYPES.get(storage_type.name, "?") if isinstance(storage_type, _Global) else "?"
            return _Storage(dtype, str(key), numel if isinstance(numel, int) else -1)
        return _Opaque()


def _rebuild_tensor(storage: Any, offset: Any = 0, size: Any = (), *args: Any) -> Any:
    dtype = storage.dtype if isinstance(storage, _Storage) else "?"
    if isinstance(size, _Opaque) and size.args:  # torch.Size((...)) pickled as itself
        size = size.args[0]
    shape = tuple(int(d) for d in size if isinstance(d, int)) if isinstance(size, (tuple, list)) else ()
    return _Tensor(dtype, shape)


def _rebuild_parameter(data: Any, *args: Any) -> Any:
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any = (), state: Any = None) -> Any:
    # func is one of our own rebuild functions or an inert stub: calling it runs nothing of the file's
    return func(*args) if callable(func) and isinstance(args, tuple) else _Opaque()


class _Walk(msgspec.Struct):
    out: dict[str, _Tensor] = {}
    visited: int = 0
    max_objects: int = msgspec.field(default_factory=lambda: limit("pickle_objects"))
    max_depth: int = msgspec.field(default_factory=lambda: limit("pickle_depth"))
    truncated: bool = False


def _flatten(obj: Any, prefix: str, walk: _Walk, depth: int = 0) -> None:
    """Name every tensor as `torch.load(...)` users see it: dotted dict keys, list indices, and for pickled
    modules the names their `state_dict()` would have."""
    walk.visited += 1
    if walk.visited > walk.max_objects or depth > walk.max_depth:
        walk.truncated = True
        return
    join = lambda key: f"{prefix}.{key}" if prefix else str(key)  # noqa: E731
    if isinstance(obj, _Tensor):
        walk.out[prefix] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, join(key), walk, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            _flatten(value, join(index), walk, depth + 1)
    elif isinstance(obj, _Opaque):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]  # (dict state, slot state)
        if isinstance(state, dict) and ("_parameters" in state or "_modules" in state):  # a pickled nn.Module
            for part in ("_parameters", "_buffers", "_modules"):
                if isinstance(state.get(part), dict):
                    for key, value in state[part].items():
                        if value is not None:
                            _flatten(value, join(key), walk, depth + 1)
        elif isinstance(state, dict):
            _flatten(state, prefix, walk, depth + 1)


class _Read(msgspec.Struct):
    """What was read of one file: every pickle torch may unpickle, with where it came from."""

    format: str
    pickles: list[tuple[str, bytes]] = []  # (where, bytes)
    ambiguities: list[str] = []
    unchecked: list[str] = []


def _read_zip(path: str, read: _Read) -> None:
    import zipfile  # ~5 ms: only for pickle checkpoints

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not infos:
                raise ArtifactError(path, "zip checkpoint without any member")
            first = infos[0].filename
            if "/" not in first:
                raise ArtifactError(path, f"zip checkpoint whose first member {first!r} is not in a folder")
            archive = first.split("/", 1)[0]
            wanted = f"{archive}/data.pkl".lower()
            chosen = [i for i in infos if i.filename.lower() == wanted]
            if not chosen:
                raise ArtifactError(path, f"zip checkpoint without a data.pkl record (torch reads {archive}/data.pkl)")
            if len(chosen) > 1:
                read.ambiguities.append(
                    f"{len(chosen)} members are named {chosen[0].filename!r} (or differ only in case): which one "
                    "torch reads depends on its zip reader, and other tools may read another"
                )
            torchscript = any(i.filename.lower() == f"{archive}/constants.pkl" for i in infos)
            others = [i for i in infos if i.filename.lower().endswith(".pkl") and i not in chosen]
            for info in others:
                if torchscript and info.filename.lower() == f"{archive}/constants.pkl":
                    continue
                read.ambiguities.append(
                    f"member {info.filename!r} is a second pickle beside {chosen[0].filename!r}, which torch "
                    "reads: tools that pick another member see another checkpoint"
                )
            for info in chosen + others:
                if info.file_size > limit("pickle_bytes"):
                    read.unchecked.append(f"{info.filename} is {over('pickle_bytes', info.file_size)}")
                    continue
                try:
                    with zf.open(info) as member:
                        read.pickles.append(
                            (info.filename, member.read(min(info.file_size, limit("pickle_bytes")) + 1))
                        )
                except (NotImplementedError, RuntimeError, zipfile.BadZipFile, ValueError, EOFError) as exc:
                    read.unchecked.append(f"{info.filename} could not be read ({exc})"[:200])
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ArtifactError(path, f"damaged zip checkpoint: {exc}"[:300]) from None


def _read_tar(path: str, read: _Read) -> bool:
    """A legacy (pre-0.4) tar checkpoint, which torch tries before a raw pickle. False when it is not one."""
    import tarfile

    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in ("sys_info", "pickle", "storages", "tensors"):
                try:
                    info = tar.getmember(member)
                except KeyError:
                    continue
                handle = tar.extractfile(info) if info.isfile() else None
                if handle is None:
                    continue
                read.pickles.append((f"tar member {member}", handle.read(min(info.size, limit("pickle_bytes")))))
                if member in ("storages", "tensors"):
                    read.unchecked.append(
                        f"tar member {member!r}: only its first record was vetted (legacy tar checkpoints interleave "
                        "pickles with raw data)"
                    )
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return False
    read.format = "torch-tar"
    return bool(read.pickles)


def _read_raw(path: str, read: _Read) -> None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(min(os.fstat(fh.fileno()).st_size, limit("pickle_bytes")))
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror or exc}") from None
    first = scan_pickle(data, 0)
    read.pickles.append(("byte 0", data[: first.end] if first.end is not None else data))
    magic = first.end is not None and _inert_load(data[: first.end])[0] == LEGACY_TORCH_MAGIC
    if magic:
        # torch.save before 1.6: magic, protocol version, sys info, the object, then the storage keys
        read.format = "torch-legacy"
        start = first.end
        for label in ("protocol", "sys info", "object", "storage keys"):
            assert start is not None
            part = scan_pickle(data, start)
            read.pickles.append((f"{label} pickle at byte {start}", data[start : part.end or len(data)]))
            if part.end is None:
                break
            start = part.end
    import zipfile

    try:
        hidden_zip = zipfile.is_zipfile(path)
    except OSError:
        hidden_zip = False
    if hidden_zip:
        read.ambiguities.append(
            "a pickle stream at byte 0 with a zip archive after it: torch unpickles from byte 0, zip tools and "
            "scanners see the archive"
        )
        try:
            _read_zip(path, read)
        except ArtifactError as exc:
            read.unchecked.append(exc.problem)


def _inert_load(data: bytes) -> tuple[Any, _InertUnpickler, str | None]:
    """The object a pickle builds inertly, the unpickler (globals seen) and why reconstruction stopped, if it did."""
    unpickler = _InertUnpickler(data)
    try:
        return unpickler.load(), unpickler, None
    except RecursionError:
        return None, unpickler, "nested too deeply"
    except Exception as exc:  # a hostile or damaged stream can raise nearly anything
        return None, unpickler, f"{type(exc).__name__}: {exc}"[:200]


def read_pickle_checkpoint(path: str) -> WeightFile:
    size = regular_file_size(path)
    refuse_missing_content(path, size)
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror or exc}") from None
    if head.startswith(ZIP_LOCAL_HEADER):
        read = _Read("torch-zip")
        _read_zip(path, read)
    else:
        read = _Read("pickle")
        if not _read_tar(path, read):
            read = _Read("pickle")
            _read_raw(path, read)

    globals_: list[tuple[str, str]] = []
    walk = _Walk()
    read_any = False
    problems: list[str] = []
    for where, data in read.pickles:
        scan = scan_pickle(data)
        globals_ += scan.globals
        if scan.problem is not None and scan.problem.startswith("more than"):
            read.unchecked.append(f"{where}: {scan.problem}")
        elif scan.problem is not None:
            problems.append(f"{where}: {scan.problem}")
        obj, unpickler, stopped = _inert_load(data)
        globals_ += unpickler.globals_seen
        if stopped is None:
            read_any = True
            _flatten(obj, "", walk)
        elif scan.problem is None:
            read.unchecked.append(
                f"{where}: rebuilding stopped ({stopped}); tensors after that point were not read (every global "
                "in it was still vetted)"
            )
    if not read_any and not globals_:
        why = "; ".join(problems + read.unchecked) or "no pickle could be read"
        raise ArtifactError(path, f"not a readable pickle checkpoint ({why})"[:300])
    if walk.truncated:
        read.unchecked.append(
            f"more than {walk.max_objects} objects or {walk.max_depth} levels: not every tensor was named (limits "
            "pickle_objects and pickle_depth; raise them with TTSDOCTOR_LIMIT_PICKLE_OBJECTS / _DEPTH)"
        )
    tensors = {name: TensorInfo(name, t.dtype, t.shape, path) for name, t in walk.out.items()}
    return WeightFile(
        path=path,
        format=read.format,
        tensors=tensors,
        pickle_globals=tuple(globals_),
        pickle_members=tuple(where for where, _ in read.pickles),
        ambiguities=tuple(read.ambiguities),
        unchecked=tuple(read.unchecked),
        damaged=tuple(f"damaged pickle checkpoint: {p}; every global before that point was vetted" for p in problems),
    )


def looks_like_checkpoint(path: str) -> bool:
    """Whether a `.bin` file is a PyTorch checkpoint at all (many `.bin` files are raw data or vocabularies)."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return True  # let the reader refuse it by name
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return True  # let the reader report it
    return (
        head.startswith((ZIP_LOCAL_HEADER, LFS_POINTER_PREFIX, *PICKLE_STARTS))
        or (len(head) >= 262 and head[257:262] == b"ustar")
        or os.path.getsize(path) == 0
    )
