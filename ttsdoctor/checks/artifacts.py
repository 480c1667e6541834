"""ART: artifacts that cannot be read, and values of the wrong type."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import Rule


@dataclass
class BrokenTarget:
    """A target that could not be loaded at all (missing path, unreadable file)."""

    path: str
    errors: list[ArtifactError] = field(default_factory=list)
    kind = "broken"


ALL_KINDS = ("model_dir", "training_config", "source", "broken")


class UnreadableArtifact(Rule):
    id = "ART001"
    name = "unreadable-artifact"
    summary = "A file that ttsdoctor (and the training or loading code) cannot read"
    severity = Severity.ERROR
    targets = ALL_KINDS

    def check(self, target: Any) -> Iterator[Finding]:
        for error in target.errors:
            yield self.finding(error.problem, error.path, line=error.line, column=error.column)


class MalformedValue(Rule):
    id = "ART002"
    name = "malformed-value"
    summary = "A config value of the wrong type, a duplicate key or a non-standard JSON constant"
    severity = Severity.ERROR
    targets = ("model_dir",)

    def check(self, target: Any) -> Iterator[Finding]:
        for doc in (target.config, target.generation_config):
            if doc is None:
                continue
            for pointer, problem in doc.problems:
                line, column = doc.position(pointer) if pointer else (None, None)
                soft = problem.startswith(("duplicate key", "non-standard"))
                yield self.finding(
                    problem,
                    doc.path,
                    pointer or None,
                    line,
                    column,
                    severity=Severity.WARNING if soft else Severity.ERROR,
                )


class MissingNamedFile(Rule):
    id = "ART003"
    name = "missing-named-file"
    summary = "A training config names a tokenizer, checkpoint or other file that exists nowhere"
    severity = Severity.WARNING
    targets = ("training_config",)

    def check(self, target: Any) -> Iterator[Finding]:
        for named in target.named_files:
            if named.resolved is not None:
                continue
            entry = named.entry
            tried = ", ".join(named.tried)
            yield self.finding(
                f"{entry.key} names {entry.value!r}, which exists nowhere (tried {tried}): the training "
                "run will fail, or silently fall back to another file",
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                {"value": entry.value, "tried": list(named.tried)},
            )
