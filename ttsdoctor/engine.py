"""run(rules, targets) -> findings. Pure: loads artifacts, runs rules, prints nothing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError, BrokenTarget
from ttsdoctor.discover import Target
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import Rule
from ttsdoctor.settings import Settings, Suppression


class Checked(msgspec.Struct, frozen=True):
    """What the report needs of a checked target. Loaded artifacts (ASTs, vocabularies) are not kept:
    holding thousands of trees makes every later allocation pay for garbage collection."""

    kind: str
    path: str
    family: Any = None
    family_evidence: str | None = None  # what the family was recognised from


class CheckResult(msgspec.Struct):
    findings: list[Finding]
    loaded: list[Checked] = []  # checked targets, in discovery order
    internal_errors: list[str] = []  # rule crashes: bugs of ours, never the user's
    target_of: dict[Finding, str] = {}  # finding -> path of the target that found it
    unreadable_ids: frozenset[str] = frozenset()  # the rules whose findings mean "could not be read"
    remote: list[dict[str, Any]] = []  # Hub repositories checked: commit, bytes read

    @property
    def unreadable(self) -> bool:
        return any(f.rule_id in self.unreadable_ids for f in self.findings)

    @property
    def unreadable_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.rule_id in self.unreadable_ids]

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)


def load(target: Target) -> Any:
    """Load one target's artifacts. Never raises for bad input: problems land in `.errors`."""
    if target.kind == "model_dir":
        from ttsdoctor.artifacts.model_dir import load_model_dir

        return load_model_dir(target.path, target.header_only)
    if target.kind == "gguf":
        from ttsdoctor.artifacts.gguf_file import load_gguf

        return load_gguf(target.path)
    if target.kind == "link":
        from ttsdoctor.artifacts.links import load_link

        return load_link(target.path, target.root)
    if target.kind == "missing":
        return BrokenTarget(target.path, [ArtifactError(target.path, "no such file or directory")])
    if target.kind == "unreadable":
        return BrokenTarget(
            target.path, [ArtifactError(target.path, "cannot list this folder: nothing in it was checked")]
        )
    if target.kind == "unsupported":
        return BrokenTarget(
            target.path,
            [
                ArtifactError(
                    target.path,
                    "not a kind of file ttsdoctor checks (model directory files, training configs in "
                    "YAML/JSON, Python sources)",
                )
            ],
        )
    try:
        if target.kind == "training_config":
            from ttsdoctor.artifacts.training_config import load_training_config

            return load_training_config(target.path, target.root, dict(target.hub_folders), target.header_only)
        from ttsdoctor.artifacts.source import load_source

        return load_source(target.path)
    except ArtifactError as exc:
        return BrokenTarget(target.path, [exc])


def _suppressed(finding: Finding, loaded: Any, used: set[tuple[int, str]]) -> bool:
    """Inline `# ttsdoctor: ignore[CODE]` on the finding's line (sources and YAML)."""
    suppressions = getattr(loaded, "suppressions", None)
    if not suppressions or finding.location.line is None or finding.location.path != loaded.path:
        return False
    line = finding.location.line
    if line not in suppressions:
        return False
    codes = suppressions[line]
    if codes is None:
        used.add((line, "*"))
        return True
    for code in codes:
        if finding.rule_id.startswith(code):
            used.add((line, code))
            return True
    return False


def _reviews(rules: tuple[Rule, ...], rule_id: str) -> bool:
    return any(rule.id == rule_id and rule.reviews_suppressions for rule in rules)


def _reviewer(rules: tuple[Rule, ...]) -> Rule | None:
    return next((rule for rule in rules if rule.reviews_suppressions), None)


def _unused_inline(loaded: Any, used: set[tuple[int, str]], rules: tuple[Rule, ...]) -> list[Finding]:
    active = {rule.id for rule in rules}
    reviewer = _reviewer(rules)
    if reviewer is None:
        return []
    out = []
    for line, codes in (getattr(loaded, "suppressions", None) or {}).items():
        if codes is None:
            if (line, "*") not in used:
                out.append(reviewer.unused(loaded.path, line, "every rule"))
            continue
        for code in sorted(codes):
            # a code of a rule that did not run (deselected) cannot be judged
            if (line, code) not in used and any(r.startswith(code) for r in active):
                out.append(reviewer.unused(loaded.path, line, code))
    return out


def _as_info(
    findings: list[Finding], rules: tuple[Rule, ...], why: str, applies: Callable[[Finding], bool]
) -> list[Finding]:
    """The findings with those `applies` selects made info, `why` added to their message (the suppression reviewer's
    own findings are left as they are)."""
    return [
        msgspec.structs.replace(f, severity=Severity.INFO, message=f"{f.message} ({why})")
        if applies(f) and not _reviews(rules, f.rule_id)
        else f
        for f in findings
    ]


def check_loaded(rules: tuple[Rule, ...], loaded: Any, internal_errors: list[str] | None = None) -> list[Finding]:
    """Run every applicable rule. A crashing rule is a bug of ours: recorded, the other rules still run
    (set TTSDOCTOR_DEBUG=1 to raise instead)."""
    findings: list[Finding] = []
    used: set[tuple[int, str]] = set()
    for rule in rules:
        if not rule.applies(loaded):
            continue
        try:
            findings.extend(f for f in rule.check(loaded) if not _suppressed(f, loaded, used))
        except Exception as exc:
            if os.environ.get("TTSDOCTOR_DEBUG"):
                raise
            if internal_errors is not None:
                internal_errors.append(f"{rule.id} crashed on {loaded.path}: {type(exc).__name__}: {exc}")
    findings += _unused_inline(loaded, used, rules)
    if getattr(loaded, "is_test", False):  # test code pins odd values on purpose: worth knowing, not failing CI
        kept = {r.id for r in rules if r.id.startswith("SEC") or r.marks_unreadable}  # unsafe or unreadable: as is
        findings = _as_info(
            findings,
            rules,
            "in test code",
            lambda f: f.severity in (Severity.ERROR, Severity.WARNING) and f.rule_id not in kept,
        )
    stop = getattr(loaded, "stops_at", None)  # a script ending at a top-level quit(): what follows does not run
    if stop is not None:
        findings = _as_info(
            findings,
            rules,
            f"after {stop[1]} at line {stop[0]}: not run as the file stands",
            lambda f: (
                f.severity in (Severity.ERROR, Severity.WARNING)
                and f.location.path == loaded.path
                and (f.location.line or 0) > stop[0]
            ),
        )
    map_location = getattr(loaded, "map_location", None)  # notebooks: cell and line in the cell
    if map_location is not None:
        findings = [msgspec.structs.replace(f, location=map_location(f.location)) for f in findings]
    return findings


def check_target(
    rules: tuple[Rule, ...], target: Target, settings: Settings | None
) -> tuple[Checked, list[Finding], list[str]]:
    """Load and check one target: what the report needs of it, its findings and any rule crash."""
    loaded = load(target)
    if settings is not None and getattr(loaded, "kind", None) == "model_dir":
        settings.apply_family(loaded)
    detection = getattr(loaded, "family_detection", None)
    checked = Checked(loaded.kind, loaded.path, getattr(loaded, "family", None), detection and detection.evidence)
    internal: list[str] = []
    findings = check_loaded(rules, loaded, internal)
    return checked, findings, internal


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


PARALLEL_MIN_TARGETS = 4  # below this, starting workers costs more than it saves


def run(
    rules: Iterable[Rule],
    targets: Iterable[Target],
    settings: Settings | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    jobs: int = 1,
) -> CheckResult:
    """Check every target; with `jobs` > 1 in worker processes. The result is the same whatever `jobs` is:
    targets are reported in discovery order, findings in the same order, a target that crashes a worker is a
    finding of its own."""
    rules = tuple(rules)
    targets = list(targets)
    result = CheckResult(findings=[], unreadable_ids=frozenset(r.id for r in rules if r.marks_unreadable))
    if jobs > 1 and len(targets) >= PARALLEL_MIN_TARGETS:
        outcomes = _run_parallel(rules, targets, settings, progress, jobs)
    else:
        outcomes = []
        for index, target in enumerate(targets):
            if progress is not None:
                progress(index, len(targets), target.path)
            outcomes.append(check_target(rules, target, settings))
    seen: set[Finding] = set()
    for target, (checked, findings, internal) in zip(targets, outcomes):
        result.loaded.append(checked)
        result.internal_errors += internal
        for finding in findings:
            if finding not in seen:  # a file shared by two targets reports once
                seen.add(finding)
                result.findings.append(finding)
                result.target_of[finding] = target.path
    if settings is not None:
        result.findings = apply_settings(result.findings, settings, rules)
    result.findings.sort(key=Finding.sort_key)
    return result


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent, which stops them: a worker that took it would keep waiting for work."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate(pool: Any) -> None:
    processes = list(getattr(pool, "_processes", {}).values())  # the executor has no public way to kill workers
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


def _crashed(target: Target, why: str) -> tuple[Checked, list[Finding], list[str]]:
    broken = BrokenTarget(target.path, [ArtifactError(target.path, f"checking it crashed a worker process ({why})")])
    from ttsdoctor.checks.artifacts import UnreadableArtifact

    return Checked("broken", target.path), list(UnreadableArtifact().check(broken)), []


# Modules the loaders of model folders import on first use (~0.2 s together): imported once before the workers
# are forked, instead of once in every worker
_MODEL_DIR_MODULES = ("numpy", "tokenizers")  # msgspec: every module imports it (the data model)


def _preload(targets: list[Target]) -> None:
    import contextlib
    import importlib

    if any(target.kind in ("model_dir", "gguf") for target in targets):
        for name in _MODEL_DIR_MODULES:
            with contextlib.suppress(ImportError):  # the loader that needs it says so, in the worker
                importlib.import_module(name)


def _run_parallel(
    rules: tuple[Rule, ...],
    targets: list[Target],
    settings: Settings | None,
    progress: Callable[[int, int, str], None] | None,
    jobs: int,
) -> list[tuple[Checked, list[Finding], list[str]]]:
    """Targets in worker processes (fork: the workers start with every module already imported). Results come
    back in target order. A worker that dies (a segfault in a parsing library) breaks the pool: the targets it
    left are run again one process each, so that only the culprit is reported."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    if context.get_start_method() == "fork":
        _preload(targets)
    outcomes: dict[int, tuple[Checked, list[Finding], list[str]]] = {}
    done = 0
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(targets)), mp_context=context, initializer=_worker_init)
    try:
        futures = {pool.submit(check_target, rules, t, settings): i for i, t in enumerate(targets)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                outcomes[index] = future.result()
            except BrokenProcessPool:
                continue
            done += 1
            if progress is not None:
                progress(done, len(targets), targets[index].path)
    except BaseException:  # Ctrl-C (only this process gets it) or a bug: stop the workers, leave none behind
        _terminate(pool)
        raise
    pool.shutdown(wait=True)
    for index, target in enumerate(targets):  # isolate what a dead worker left: one process per target
        if index in outcomes:
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_worker_init) as alone:
            try:
                outcomes[index] = alone.submit(check_target, rules, target, settings).result()
            except BrokenProcessPool as exc:
                outcomes[index] = _crashed(target, str(exc) or "the process died")
    return [outcomes[i] for i in range(len(targets))]


def apply_settings(findings: list[Finding], settings: Settings, rules: tuple[Rule, ...]) -> list[Finding]:
    """Drop per-path ignores and settings suppressions; report suppressions that matched nothing."""
    kept = []
    used: set[Suppression] = set()
    for finding in findings:
        if settings.ignored(finding):
            continue
        suppression = settings.suppression_for(finding)
        if suppression is not None:
            used.add(suppression)
            continue
        kept.append(finding)
    active = {rule.id for rule in rules}
    reviewer = _reviewer(rules)
    if reviewer is not None and settings.path is not None:
        for item in settings.suppress:
            if item not in used and any(r.startswith(item.code) for r in active):
                kept.append(reviewer.unused(settings.path, None, f"{item.code} at {item.path}"))
    return kept
