"""Safe writes: atomic replacement, backups first (hard links for large files), all-or-nothing sets.

Nothing here opens a file for writing in place: new content goes to a temporary file in the same
directory, is fsynced, and replaces the original with os.replace, so a crash at any point leaves either
the old file or the new one. The original is hard-linked into a backup directory before that (a copy
where links are not possible), so a multi-file transaction can restore every file it touched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

BACKUP_DIR = ".ttsdoctor-backups"


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(fh)` into a temporary sibling, fsync, then os.replace."""
    directory = os.path.dirname(path) or "."
    mode = None
    if os.path.exists(path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".ttsdoctor-tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(data: bytes, fh: BinaryIO) -> None:
    fh.write(data)


@dataclass
class Transaction:
    """Back up every file before its first write; `rollback` restores them all."""

    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}")
    backups: dict[str, str | None] = field(default_factory=dict)  # path -> backup path (None: file was new)

    def backup_path(self, path: str) -> str:
        directory = os.path.dirname(path) or "."
        return os.path.join(directory, BACKUP_DIR, self.stamp, os.path.basename(path))

    def backup(self, path: str) -> None:
        if path in self.backups:
            return
        folder = os.path.join(os.path.dirname(path) or ".", BACKUP_DIR)
        for link in (path, folder):
            if os.path.islink(link):  # committable in a hostile repository: never write where it points
                raise OSError(f"{link} is a symbolic link: fix does not write through a link it did not create")
        if not os.path.exists(path):
            self.backups[path] = None
            return
        target = self.backup_path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.link(path, target)  # weights are gigabytes: link, do not copy
        except OSError:
            shutil.copy2(path, target)
        self.backups[path] = target

    def write(self, path: str, write: Callable[[BinaryIO], None]) -> None:
        self.backup(path)
        atomic_write(path, write)

    def discard(self) -> None:
        """Delete the backups of a transaction that succeeded (the pre-commit hook: git is the backup)."""
        for backup in self.backups.values():
            if backup is None:
                continue
            try:
                os.unlink(backup)
            except OSError:
                continue
            directory = os.path.dirname(backup)
            for folder in (directory, os.path.dirname(directory)):  # <stamp>/ then .ttsdoctor-backups/
                try:
                    os.rmdir(folder)
                except OSError:
                    break

    def rollback(self) -> list[str]:
        """Restore every file touched; returns the paths restored. Backups stay where they are."""
        restored = []
        for path, backup in self.backups.items():
            if backup is None:
                if os.path.exists(path):
                    os.unlink(path)
                    restored.append(path)
                continue
            atomic_write(path, functools.partial(_copy_from, backup))
            restored.append(path)
        return restored


def _copy_from(source: str, fh: BinaryIO) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, fh, 1 << 20)
