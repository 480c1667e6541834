"""The Rule base class: explicit metadata and one pure `check`.

A rule names the target kinds it applies to and the artifacts it needs; the engine calls `check`
only when those artifacts are loaded. `check` yields findings and keeps no state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from ttsdoctor.finding import Finding, Fix, Location, Severity


class Rule:
    id: ClassVar[str]
    name: ClassVar[str]  # kebab-case
    summary: ClassVar[str]  # one line: what the rule finds
    severity: ClassVar[Severity]
    targets: ClassVar[tuple[str, ...]]  # target kinds: "model_dir", "training_config", "source"
    needs: ClassVar[tuple[str, ...]] = ()  # attributes of the target that must not be None

    def check(self, target: Any) -> Iterator[Finding]:
        raise NotImplementedError

    def applies(self, target: Any) -> bool:
        return target.kind in self.targets and all(getattr(target, need, None) is not None for need in self.needs)

    def finding(
        self,
        message: str,
        path: str,
        pointer: str | None = None,
        line: int | None = None,
        column: int | None = None,
        evidence: dict[str, Any] | None = None,
        fix: Fix | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        return Finding(
            self.id,
            self.name,
            severity or self.severity,
            message,
            Location(path, pointer, line, column),
            evidence or {},
            fix,
        )
