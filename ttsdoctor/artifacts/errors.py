"""The one exception loaders raise (an artifact that cannot be read, with the file and the problem), and the
loaded form of a target that could not be loaded at all."""

from __future__ import annotations

import os
import stat

import msgspec


class ArtifactError(Exception):
    def __init__(self, path: str, problem: str, line: int | None = None, column: int | None = None):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.line = line
        self.column = column


class MissingContent(ArtifactError):
    """A file standing where weights, a tokenizer or a config belong without their content: ART004 reports it (a
    warning: nothing in it is damaged, it is not there), not ART001."""


class LfsPointer(MissingContent):
    """A Git LFS pointer file standing where the real file belongs (a clone without `git lfs pull`)."""

    def __init__(self, path: str, object_size: int | None):
        self.object_size = object_size
        size = f" of {human_bytes(object_size)}" if object_size is not None else ""
        super().__init__(path, f"is a Git LFS pointer (to an object{size}), not the file itself: run `git lfs pull`")


class EmptyWeights(MissingContent):
    """A weight file of 0 bytes: a placeholder committed for an output the code writes, or a failed download."""

    def __init__(self, path: str):
        super().__init__(path, "is empty (0 bytes): no weights in it (a placeholder, or a failed download)")


class AbsentShards(MissingContent):
    """A sharded-weights index none of whose shards is in its folder: the weights were not downloaded or are kept
    out of the repository (install scripts fetch them), the state of an LFS clone, not a damaged save."""

    def __init__(self, path: str, shards: list[str]):
        self.shards = shards
        named = ", ".join(shards[:2]) + (f" and {len(shards) - 2} more" if len(shards) > 2 else "")
        super().__init__(
            path,
            f"names {len(shards)} shard{'s' if len(shards) > 1 else ''} ({named}) and none of them is here: the "
            "weights were not downloaded (or are kept out of the repository)",
        )


class BrokenTarget(msgspec.Struct):
    """What loading gives for a target that could not be loaded at all (a missing path, an unreadable folder, a
    file of no kind ttsdoctor checks, a worker that crashed on it): only its errors, which ART001 reports."""

    path: str
    errors: list[ArtifactError] = []
    kind = "broken"


LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
MAX_LFS_POINTER = 1024  # git-lfs writes ~130 bytes; it never treats a file above 1024 bytes as a pointer


def check_lfs_pointer(path: str, head: bytes, size: int) -> None:
    """Raise LfsPointer when the file (its first bytes `head`, its `size`) is a Git LFS pointer."""
    if size > MAX_LFS_POINTER or not head.startswith(LFS_POINTER_PREFIX):
        return
    object_size = None
    for line in head.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "size" and value.strip().isdigit():
            object_size = int(value.strip())
    raise LfsPointer(path, object_size)


def human_bytes(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def regular_file_size(path: str) -> int:
    """The size of a regular file; ArtifactError for a missing file, a directory or a special file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ArtifactError(path, "file not found") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot stat: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ArtifactError(path, "is a directory where a file is expected")
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(path, "is not a regular file")
    return st.st_size


def refuse_missing_content(path: str, size: int) -> None:
    """Raise EmptyWeights for a weight file of 0 bytes; read the head of a small one and raise LfsPointer when it is
    a Git LFS pointer (binary formats)."""
    if size == 0:
        raise EmptyWeights(path)
    if size > MAX_LFS_POINTER:
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_LFS_POINTER)
    except OSError:
        return  # the format's own reader reports it
    check_lfs_pointer(path, head, size)


def read_bytes(path: str, budget: str) -> bytes:
    """Read a whole regular file, refusing directories, special files and files above the byte budget named."""
    from ttsdoctor.limits import limit as budget_of
    from ttsdoctor.limits import over

    size = regular_file_size(path)
    limit = budget_of(budget)
    if size > limit:
        raise ArtifactError(path, f"is {over(budget, size)}")
    try:
        with open(path, "rb") as fh:
            data = fh.read(min(size, limit) + 1)  # read(n) allocates n bytes up front: never ask for the limit
    except PermissionError:
        raise ArtifactError(path, "permission denied") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror or exc}") from None
    check_lfs_pointer(path, data, len(data))
    return data


def decode_utf8(path: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(
            path, f"is not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r})"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text
