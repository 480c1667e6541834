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
    # Options a project may set in [tool.ttsdoctor.rules.<ID>]: name -> (type, default). Read as attributes.
    options: ClassVar[dict[str, tuple[type, Any]]] = {}
    # Roles the engine asks of a rule instead of knowing it by name: its findings mean "this input could not
    # be read" (exit code 2), or it reports the suppressions that matched nothing once every rule has run.
    marks_unreadable: ClassVar[bool] = False
    reviews_suppressions: ClassVar[bool] = False

    def check(self, target: Any) -> Iterator[Finding]:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        spec = type(self).options.get(name.replace("_", "-"))
        if spec is None:
            raise AttributeError(name)
        return spec[1]

    def configured(self, values: dict[str, Any]) -> Rule:
        """A copy of the rule with project options (validated); the rule itself keeps no state."""
        if not values:
            return self
        copy = object.__new__(type(self))
        for key, value in values.items():
            spec = self.options.get(key)
            if spec is None:
                known = ", ".join(sorted(self.options)) or "none"
                raise ValueError(f"{self.id} has no option {key!r} (options: {known})")
            kind, _default = spec
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise ValueError(f"{self.id} option {key!r} must be {kind.__name__}, got {value!r}")
            copy.__dict__[key.replace("-", "_")] = value
        return copy

    def unused(self, path: str, line: int | None, codes: str) -> Finding:
        """For the rule that reviews suppressions: the finding for one that matched nothing."""
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
