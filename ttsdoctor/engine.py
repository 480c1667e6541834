"""run(rules, targets) -> findings. Pure: loads artifacts, runs rules, prints nothing."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.checks.artifacts import BrokenTarget
from ttsdoctor.discover import Target
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import Rule


@dataclass
class CheckResult:
    findings: list[Finding]
    loaded: list[Any] = field(default_factory=list)  # loaded targets, in discovery order
    internal_errors: list[str] = field(default_factory=list)  # rule crashes: bugs of ours, never the user's

    @property
    def unreadable(self) -> bool:
        return any(f.rule_id == "ART001" for f in self.findings)

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)


def load(target: Target) -> Any:
    """Load one target's artifacts. Never raises for bad input: problems land in `.errors`."""
    if target.kind == "model_dir":
        from ttsdoctor.artifacts.model_dir import load_model_dir

        return load_model_dir(target.path)
    if target.kind == "missing":
        return BrokenTarget(target.path, [ArtifactError(target.path, "no such file or directory")])
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

            return load_training_config(target.path)
        from ttsdoctor.artifacts.source import load_source

        return load_source(target.path)
    except ArtifactError as exc:
        return BrokenTarget(target.path, [exc])


def _suppressed(finding: Finding, loaded: Any) -> bool:
    suppressions = getattr(loaded, "suppressions", None)
    if not suppressions or finding.location.line is None or finding.location.path != loaded.path:
        return False
    codes = suppressions.get(finding.location.line, ())
    if codes is None:
        return True
    return any(finding.rule_id.startswith(code) for code in codes)


def check_loaded(rules: Iterable[Rule], loaded: Any, internal_errors: list[str] | None = None) -> list[Finding]:
    """Run every applicable rule. A crashing rule is a bug of ours: recorded, the other rules still run
    (set TTSDOCTOR_DEBUG=1 to raise instead)."""
    findings: list[Finding] = []
    for rule in rules:
        if not rule.applies(loaded):
            continue
        try:
            findings.extend(f for f in rule.check(loaded) if not _suppressed(f, loaded))
        except Exception as exc:
            if os.environ.get("TTSDOCTOR_DEBUG"):
                raise
            if internal_errors is not None:
                internal_errors.append(f"{rule.id} crashed on {loaded.path}: {type(exc).__name__}: {exc}")
    return findings


def run(rules: Iterable[Rule], targets: Iterable[Target]) -> CheckResult:
    rules = tuple(rules)
    result = CheckResult(findings=[])
    seen: set[Finding] = set()
    for target in targets:
        loaded = load(target)
        result.loaded.append(loaded)
        for finding in check_loaded(rules, loaded, result.internal_errors):
            if finding not in seen:  # a file shared by two targets reports once
                seen.add(finding)
                result.findings.append(finding)
    result.findings.sort(key=Finding.sort_key)
    return result
