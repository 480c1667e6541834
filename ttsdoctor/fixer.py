"""plan -> diff | apply -> re-check. Fixes are data; one careful loop applies them.

- plan: take each finding's fix in order; skip display-only fixes, unsafe ones without
  --unsafe-fixes, fixes whose edits conflict with an accepted fix (overlapping source ranges, the same
  JSON key set to two values, the same tensor resized twice) and fixes whose result would not parse.
- apply: every file of the plan is written in one Transaction (backups first, atomic replace);
  any failure restores them all.
- verify: re-check; a fixed finding that remains or a new error rolls the transaction back.
- the loop repeats until no fix applies (a fix can unlock another); it gives up loudly after
  MAX_ITERATIONS.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from ttsdoctor import engine, fsio
from ttsdoctor.discover import Target
from ttsdoctor.edits import EditError, apply_text, resize_plan, resize_writer
from ttsdoctor.finding import (
    Applicability,
    Edit,
    Finding,
    Fix,
    ResizeTensor,
    Severity,
)
from ttsdoctor.fsio import RollbackFailed, Transaction, write_bytes
from ttsdoctor.rule import Rule

MAX_ITERATIONS = 10


class Plan(msgspec.Struct):
    fixes: list[tuple[Fix, list[Finding]]] = []
    skipped: list[tuple[Finding, str]] = []
    originals: dict[str, str] = {}
    texts: dict[str, str] = {}  # path -> new text
    tensors: dict[str, list[ResizeTensor]] = {}
    identities: dict[str, tuple[int, int, int] | None] = {}  # path -> (inode, size, mtime)

    @property
    def empty(self) -> bool:
        return not self.fixes

    @property
    def paths(self) -> list[str]:
        return sorted(set(self.texts) | set(self.tensors))


def _read_text(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _conflicts(a: Edit, b: Edit) -> bool:
    return a.path == b.path and a != b and a.overlaps(b)


def plan(findings: Iterable[Finding], unsafe: bool = False) -> Plan:
    """Accept fixes in order. Every accepted fix is first applied together with the others in one pass per file
    (linear in the number of fixes); only when that combined result fails is each fix tried in turn on top of
    those accepted before it, which drops exactly the fixes that fail."""
    findings = list(findings)
    batch = _plan(findings, unsafe, batch=True)
    if batch is not None:
        return batch
    one_by_one = _plan(findings, unsafe, batch=False)
    assert one_by_one is not None  # only the combined pass gives up
    return one_by_one


def _plan(findings: list[Finding], unsafe: bool, batch: bool) -> Plan | None:
    result = Plan()
    accepted: dict[str, list[Edit]] = {}
    by_fix: dict[str, list[Finding]] = {}
    for finding in findings:
        fix = finding.fix
        if fix is None:
            continue
        if fix_key(fix) in by_fix:
            by_fix[fix_key(fix)].append(finding)
            continue
        if fix.applicability is Applicability.DISPLAY_ONLY:
            result.skipped.append((finding, "display-only"))
            continue
        if fix.applicability is Applicability.UNSAFE and not unsafe:
            result.skipped.append((finding, "unsafe: needs --unsafe-fixes"))
            continue
        if any(_conflicts(e, other) for e in fix.edits for edits in accepted.values() for other in edits):
            result.skipped.append((finding, "overlaps another fix: applied on a later pass"))
            continue
        trial: dict[str, str] = {}
        try:
            for path in fix.paths:
                result.identities.setdefault(path, identity(path))
                edits = [e for e in accepted.get(path, []) + list(fix.edits) if e.path == path]
                text_edits = [e for e in edits if not isinstance(e, ResizeTensor)]
                if text_edits:
                    if path not in result.originals:
                        result.originals[path] = _read_text(path)
                    if not batch:
                        trial[path] = apply_text(path, result.originals[path], _ordered(text_edits))
                resizes = [e for e in edits if isinstance(e, ResizeTensor)]
                if resizes:
                    resize_plan(path, resizes)
        except (EditError, OSError, UnicodeDecodeError, ValueError) as exc:
            result.skipped.append((finding, f"not applied: {exc}"))
            continue
        except Exception as exc:  # an editing library failing on odd input (YAML anchors, a BOM): skip, say why
            if os.environ.get("TTSDOCTOR_DEBUG"):
                raise
            result.skipped.append((finding, f"not applied: {type(exc).__name__}: {exc}"[:300]))
            continue
        for edit in fix.edits:
            accepted.setdefault(edit.path, [])
            if edit not in accepted[edit.path]:
                accepted[edit.path].append(edit)
        result.texts.update(trial)
        for path in fix.paths:
            resizes = [e for e in accepted.get(path, []) if isinstance(e, ResizeTensor)]
            if resizes:
                result.tensors[path] = resizes
        by_fix[fix_key(fix)] = [finding]
        result.fixes.append((fix, by_fix[fix_key(fix)]))
    if batch:
        try:
            for path in result.originals:
                text_edits = [e for e in accepted.get(path, []) if not isinstance(e, ResizeTensor)]
                if text_edits:
                    result.texts[path] = apply_text(path, result.originals[path], _ordered(text_edits))
        except Exception as exc:  # some fix fails in combination: find which, one by one
            if os.environ.get("TTSDOCTOR_DEBUG") and not isinstance(exc, (EditError, ValueError)):
                raise
            return None
    result.texts = {p: t for p, t in result.texts.items() if t != result.originals.get(p)}
    return result


def fix_key(fix: Fix) -> str:
    """Identity of a fix: the same edits (values may be unhashable dicts) are the same fix."""
    return repr((fix.applicability, fix.edits))


def _ordered(edits: Sequence[Edit]) -> list[Edit]:
    """Token additions before the values that name the new token; imports after range edits."""
    return sorted(edits, key=lambda e: e.order)


def diff(p: Plan) -> str:
    out: list[str] = []
    for path in p.paths:
        if path in p.texts:
            old = p.originals.get(path, "")
            lines = difflib.unified_diff(
                old.splitlines(keepends=True),
                p.texts[path].splitlines(keepends=True),
                fromfile=path if old else "/dev/null",
                tofile=path,
                n=2,
            )
            chunk = "".join(
                line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
            )
            out.append(chunk)
        if path in p.tensors:
            out.append(
                f"--- {path} (weights)\n" + "".join(f"    {line}\n" for line in resize_plan(path, p.tensors[path]))
            )
    return "".join(out)


class FixFailed(Exception):
    def __init__(self, message: str, restored: list[str]):
        super().__init__(message)
        self.restored = restored


def identity(path: str) -> tuple[int, int, int] | None:
    """What makes a file the same file: inode, size and modification time (None when it does not exist)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def write(p: Plan, tx: Transaction) -> None:
    """Write every file of the plan inside the transaction; on any failure restore those already replaced.
    Every backup is made and journalled before the first replacement, and each file is checked to be the one
    that was read right before it is replaced: a file changed since is never overwritten."""
    try:
        for path in p.paths:  # before any backup or journal is made for a stale plan
            _refuse_if_changed(p, path)
        tx.begin(p.paths)
        for path in p.paths:
            _refuse_if_changed(p, path)  # and again right before this file is replaced
            if path in p.tensors:
                writer = resize_writer(path, p.tensors[path])
                tx.write(path, writer)
            if path in p.texts:
                data = p.texts[path].encode("utf-8")
                tx.write(path, functools.partial(write_bytes, data))
    except BaseException as exc:
        try:
            restored = tx.rollback()
        except RollbackFailed as failed:
            raise FixFailed(f"writing failed ({exc}) and {failed}", failed.restored) from exc
        if isinstance(exc, (OSError, EditError, ValueError)):
            what = "every file was restored" if restored else "no file was changed"
            raise FixFailed(f"writing failed ({exc}); {what}", restored) from exc
        raise


def _refuse_if_changed(p: Plan, path: str) -> None:
    """EditError when the file is not the one the plan read: another inode, size or modification time, or for
    text files other content (a same-size rewrite in place within the same time tick)."""
    changed = path in p.identities and identity(path) != p.identities[path]
    if not changed and path in p.texts and path in p.originals:
        changed = _read_text(path) != p.originals[path]
    if changed:
        raise EditError(f"{path} changed since it was read: not overwritten; run fix again")


def verify(before: list[Finding], after: list[Finding], fixed: list[Finding]) -> list[str]:
    """Problems that make a fix pass unacceptable: a fixed finding remains, or a new error appears."""
    problems = []
    key: Callable[[Finding], tuple[str, str, str]] = lambda f: (f.rule_id, f.location.path, f.message)  # noqa: E731
    remaining = Counter(key(f) for f in after)
    expected = Counter(key(f) for f in before)
    expected.subtract(Counter(key(f) for f in fixed))
    for item, count in remaining.items():
        if count > max(expected.get(item, 0), 0) and any(key(f) == item for f in fixed):
            problems.append(f"{item[0]} is still reported at {item[1]} after its fix")

    # A new error is a rule erring at a place it did not err before; the same problem with new numbers
    # in its message (n_vocab 887 -> 2535 against a 3000-row checkpoint) is not new.
    def where(f: Finding) -> tuple[str, str, str]:
        return f.rule_id, f.location.path, f.location.pointer or ""

    before_errors = {where(f) for f in before if f.severity is Severity.ERROR}
    for f in after:
        if f.severity is Severity.ERROR and where(f) not in before_errors:
            problems.append(f"the fix introduced {f.rule_id} at {f.location.path}: {f.message}")
    return problems


class FixReport(msgspec.Struct):
    applied: list[tuple[Fix, list[Finding]]] = []
    backups: dict[str, str | None] = {}
    skipped: list[tuple[Finding, str]] = []
    result: engine.CheckResult | None = None
    failure: str | None = None
    restored: list[str] = []
    transactions: list[Transaction] = []
    recovered: list[tuple[fsio.Journalled, list[str]]] = []

    def rollback(self) -> list[str]:
        """Undo every applied pass, newest first (used when a later proof fails)."""
        restored: list[str] = []
        for tx in reversed(self.transactions):
            try:
                restored += tx.rollback()
            except RollbackFailed as failed:
                restored += failed.restored
                self.failure = str(failed)
        return sorted(set(restored))


def fix_and_verify(
    rules: tuple[Rule, ...],
    targets: list[Target],
    unsafe: bool,
    check: Callable[[], engine.CheckResult] | None = None,
    only: Callable[[Finding], bool] | None = None,
) -> FixReport:
    """Apply fixes until none is left, re-checking after each pass; roll a failing pass back.

    `only` limits which findings' fixes are applied (the TUI's "apply this fix"); the re-check still
    looks at every finding."""
    run = check or (lambda: engine.run(rules, targets))
    report = FixReport()
    try:
        folders = target_folders(targets)
        with folder_locks(folders):
            report.recovered = _recover(folders)
            return _fix_passes(run, unsafe, only, report)
    except FolderBusy as exc:
        report.failure = str(exc)
        return report
    except OSError as exc:  # a journal's backup that cannot be put back: say so, change nothing more
        report.failure = f"an interrupted fix could not be rolled back: {exc}"
        return report


def target_folders(targets: list[Target]) -> list[str]:
    return sorted({t.path if os.path.isdir(t.path) else os.path.dirname(t.path) or "." for t in targets})


def interrupted(folders: list[str]) -> list[fsio.Journalled]:
    """Transactions a killed `fix` left unfinished in these folders (the journal was never committed)."""
    return [found for folder in folders for found in fsio.journalled(folder, "writing")]


def _recover(folders: list[str]) -> list[tuple[fsio.Journalled, list[str]]]:
    """Put back every file of an interrupted transaction (run under the folder locks, before planning)."""
    return [(found, fsio.recover(found)) for found in interrupted(folders)]


def rollback_last(targets: list[Target]) -> list[tuple[fsio.Journalled, list[str]]]:
    """`fix --rollback`: undo interrupted transactions, or else the last committed fix of each folder (refused
    for a file changed since that fix)."""
    folders = target_folders(targets)
    with folder_locks(folders):
        done = _recover(folders)
        if done:
            return done
        for folder in folders:
            committed = fsio.journalled(folder, "committed")
            if committed:
                done.append((committed[-1], fsio.recover(committed[-1], check_after=True)))
        return done


class FolderBusy(Exception):
    pass


@contextlib.contextmanager
def folder_locks(folders: list[str]) -> Iterator[None]:
    """One `fix` per folder at a time: an exclusive lock on each folder itself (no lock file is left behind)."""
    import fcntl

    held: list[int] = []
    try:
        for folder in folders:
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue  # the check reports a folder it cannot open
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise FolderBusy(
                    f"another ttsdoctor fix is running on {folder}: run again when it has finished"
                ) from None
            held.append(fd)
        yield
    finally:
        for fd in held:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _fix_passes(
    run: Callable[[], engine.CheckResult],
    unsafe: bool,
    only: Callable[[Finding], bool] | None,
    report: FixReport,
) -> FixReport:
    result = run()
    seen: set[tuple[Any, ...]] = set()
    for _ in range(MAX_ITERATIONS):
        current = plan([f for f in result.findings if only is None or only(f)], unsafe)
        report.skipped = current.skipped
        if current.empty or not current.paths:
            report.result = result
            return report
        signature = tuple(sorted(current.paths)) + tuple(fix_key(fix) for fix, _ in current.fixes)
        if signature in seen:
            report.failure = "fixes did not converge: the same changes were planned twice"
            report.result = result
            return report
        seen.add(signature)
        tx = Transaction()
        try:
            write(current, tx)
        except FixFailed as exc:
            report.failure, report.restored = str(exc), exc.restored
            report.result = result
            return report
        after = run()
        fixed = [f for _, findings in current.fixes for f in findings]
        problems = verify(result.findings, after.findings, fixed)
        if problems:
            try:
                report.restored = tx.rollback()
                report.failure = "re-check failed, every file was restored: " + "; ".join(problems[:3])
            except RollbackFailed as failed:
                report.restored = failed.restored
                report.failure = f"re-check failed ({'; '.join(problems[:3])}) and {failed}"
            report.result = run()
            return report
        tx.commit()
        report.applied += current.fixes
        report.transactions.append(tx)
        for path, backup in tx.backups.items():
            report.backups.setdefault(path, backup)
        result = after
    report.failure = f"fixes did not converge in {MAX_ITERATIONS} passes"
    report.result = result
    return report
