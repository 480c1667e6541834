"""Safe writes: atomic replacement, backups first (hard links for large files), all-or-nothing sets.

Nothing here opens a file for writing in place: new content goes to a temporary file in the same
directory, is fsynced, and replaces the original with os.replace, so a crash at any point leaves either
the old file or the new one. The original is hard-linked into a backup directory before that (a copy
where links are not possible), so a multi-file transaction can restore every file it touched.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

import msgspec

BACKUP_DIR = ".ttsdoctor-backups"
JOURNAL = "journal.json"
TMP_SUFFIX = ".ttsdoctor-tmp"
_SERIAL = itertools.count(1)  # two transactions of one process in the same second get their own folders


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
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        step("temporary-written", path)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(data: bytes, fh: BinaryIO) -> None:
    fh.write(data)


def step(name: str, path: str) -> None:
    """A step boundary of a transaction (backup made, journal written, file replaced ...). Does nothing:
    the fault-injection tests replace it to kill the process at each boundary in turn."""


class Transaction(msgspec.Struct):
    """Back up every file, journal the set, then replace them one by one; `rollback` restores them all.

    The journal (`.ttsdoctor-backups/<stamp>/journal.json` in each folder touched, listing every file of the
    transaction) is written before the first file is replaced and marked committed at the end. A process
    killed in between leaves a journal that is not committed: `recover` (run by the next `fix`, or by
    `fix --rollback`) puts every file back from its backup and deletes the temporary files left behind.
    """

    stamp: str = msgspec.field(
        default_factory=lambda: time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{next(_SERIAL)}"
    )
    backups: dict[str, str | None] = {}  # path -> backup path (None: file was new)
    written: list[str] = []  # paths replaced so far, in order
    journals: list[str] = []

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
        step("backup", path)

    def begin(self, paths: list[str]) -> None:
        """Back up every file the transaction will write and journal them, before the first replacement."""
        for path in paths:
            self.backup(path)
        self._journal("writing")

    def _journal(self, state: str) -> None:
        folders = sorted({os.path.dirname(p) or "." for p in self.backups})
        self.journals = []
        for folder in folders:  # paths relative to the folder: a folder moved after a crash still recovers
            entries = [
                {
                    "path": os.path.relpath(p, folder),
                    "backup": b and os.path.relpath(b, folder),
                    **({"after": identity(p)} if state == "committed" else {}),
                }
                for p, b in self.backups.items()
            ]
            data = json.dumps({"state": state, "stamp": self.stamp, "files": entries}, indent=1).encode()
            journal = os.path.join(folder, BACKUP_DIR, self.stamp, JOURNAL)
            os.makedirs(os.path.dirname(journal), exist_ok=True)
            atomic_write(journal, functools.partial(write_bytes, data))
            self.journals.append(journal)
        step(f"journal-{state}", folders[0] if folders else ".")

    def write(self, path: str, write: Callable[[BinaryIO], None]) -> None:
        if path not in self.backups:
            self.backup(path)
            self._journal("writing")
        atomic_write(path, write)
        self.written.append(path)
        step("replaced", path)

    def commit(self) -> None:
        """Every file is written and verified: a crash from here on leaves the fixed folder as it is."""
        if self.journals:
            self._journal("committed")

    def discard(self) -> None:
        """Delete the backups of a transaction that succeeded (the pre-commit hook: git is the backup)."""
        for backup in [*self.backups.values(), *self.journals]:
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
        """Restore every file replaced so far (files never replaced are not touched, weights are not copied);
        returns the paths restored. Backups stay where they are. RollbackFailed names what could not be."""
        restored, failed = [], []
        for path in dict.fromkeys(self.written):
            try:
                if restore(path, self.backups.get(path)):
                    restored.append(path)
            except OSError as exc:
                failed.append(f"{path} ({exc.strerror or exc}; its backup is {self.backups.get(path)})")
        if failed:
            raise RollbackFailed(failed, restored)
        if self.journals:
            with contextlib.suppress(OSError):
                self._journal("rolled-back")
        return restored


class RollbackFailed(OSError):
    def __init__(self, failed: list[str], restored: list[str]):
        super().__init__("could not restore " + "; ".join(failed))
        self.failed, self.restored = failed, restored


def restore(path: str, backup: str | None) -> bool:
    """Put `backup` back at `path` (a new file: remove it). A hard link and a rename: no copy, atomic."""
    if backup is None:
        if os.path.lexists(path):
            os.unlink(path)
            return True
        return False
    if _same_file(path, backup):
        return False  # never replaced: the backup is a link to this very file
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.restore{TMP_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(backup, tmp)
    except OSError:
        atomic_write(path, functools.partial(_copy_from, backup))
        return True
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return True


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _copy_from(source: str, fh: BinaryIO) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, fh, 1 << 20)


# --- recovery after a crash -------------------------------------------------------------------------


class Journalled(msgspec.Struct):
    """A journalled transaction found in a folder: `writing` (interrupted: the folder may be half-written)
    or `committed` (a finished fix that `fix --rollback` can undo)."""

    journal: str
    state: str
    files: list[tuple[str, str | None, list[int] | None]]  # path, backup (None: new file), identity after

    @property
    def names(self) -> str:
        return ", ".join(os.path.basename(p) for p, _, _ in self.files)


def journals_in(folder: str) -> list[tuple[str, dict]]:
    """Every readable journal under `folder`'s backups folder, oldest first."""
    root = os.path.join(folder, BACKUP_DIR)
    if os.path.islink(root) or not os.path.isdir(root):
        return []
    out = []
    for stamp in sorted(os.listdir(root)):
        journal = os.path.join(root, stamp, JOURNAL)
        if os.path.islink(journal) or not os.path.isfile(journal):
            continue
        try:
            with open(journal, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("files"), list):
            out.append((journal, doc))
    return out


def _entries(doc: dict, folder: str) -> list[tuple[str, str | None, list[int] | None]] | None:
    """The journal's files inside `folder` (path, backup, identity after the fix). None when any backup lies
    elsewhere than fix puts them: a hostile repository can commit a journal, and recovery must never read
    from outside the folder's own backups nor write outside the folder."""
    base = os.path.realpath(folder)
    out = []
    for entry in doc["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            return None
        path, backup, after = entry["path"], entry.get("backup"), entry.get("after")
        path = os.path.join(folder, path)
        backup = os.path.join(folder, backup) if isinstance(backup, str) else backup
        parent = os.path.realpath(os.path.dirname(path))
        if backup is not None and (
            not isinstance(backup, str)
            or os.path.realpath(os.path.dirname(os.path.dirname(backup))) != os.path.join(parent, BACKUP_DIR)
            or os.path.basename(backup) != os.path.basename(path)
        ):
            return None
        if parent == base or parent.startswith(base + os.sep):
            out.append((path, backup, after if isinstance(after, list) else None))
    return out


def journalled(folder: str, state: str) -> list[Journalled]:
    """The transactions journalled in `folder` in that state, oldest first."""
    found = []
    for journal, doc in journals_in(folder):
        if doc.get("state") != state:
            continue
        files = _entries(doc, folder)
        if files is not None:
            found.append(Journalled(journal, state, files))
    return found


def identity(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def recover(found: Journalled, check_after: bool = False) -> list[str]:
    """Restore every file of a journalled transaction from its backups, delete the temporary files a killed
    write left behind, and mark the journal rolled back. With `check_after` (undoing a committed fix), a
    file changed since the fix is refused rather than overwritten. Returns the paths restored."""
    if check_after:
        changed = [p for p, _, after in found.files if after is not None and identity(p) != after]
        if changed:
            raise OSError(f"{', '.join(changed)} changed since the fix: not rolled back")
    restored = []
    for path, backup, _ in found.files:
        if backup is not None and not os.path.exists(backup):
            continue  # the backup was never made: the file was never replaced either
        if restore(path, backup):
            restored.append(path)
    folder = os.path.dirname(os.path.dirname(os.path.dirname(found.journal)))  # <folder>/<backups>/<stamp>/journal
    for directory in sorted({folder, *(os.path.dirname(p) or "." for p, _, _ in found.files)}):
        for name in os.listdir(directory):
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
    with open(found.journal, encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["state"] = "rolled-back"
    atomic_write(found.journal, functools.partial(write_bytes, json.dumps(doc, indent=1).encode()))
    return restored
