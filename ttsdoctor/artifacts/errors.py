"""The one exception loaders raise: an artifact that cannot be read, with the file and the problem."""

from __future__ import annotations

import os
import stat


class ArtifactError(Exception):
    def __init__(self, path: str, problem: str, line: int | None = None, column: int | None = None):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.line = line
        self.column = column


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


def read_bytes(path: str, limit: int) -> bytes:
    """Read a whole regular file, refusing directories, special files and files above `limit` bytes."""
    size = regular_file_size(path)
    if size > limit:
        raise ArtifactError(path, f"is {size} bytes, above the {limit}-byte limit for this kind of file")
    try:
        with open(path, "rb") as fh:
            return fh.read(limit + 1)
    except PermissionError:
        raise ArtifactError(path, "permission denied") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror or exc}") from None


def decode_utf8(path: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(
            path, f"is not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r})"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text
