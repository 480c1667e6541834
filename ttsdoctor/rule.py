"""The Rule base class: explicit metadata and one typed, pure check method per kind of target.

A rule checks the kinds of target whose method it defines, and receives the loaded artifact of that
type: `check_model(ModelDir)` for model folders and GGUF files, `check_training_config(TrainingConfig)`,
`check_source(SourceFile)` for Python files and notebooks, `check_link(OutsideLink)` for links leading
out of a checked tree, `check_broken(BrokenTarget)` for targets that could not be loaded. The kinds a
rule checks (`targets`) are derived from the methods it defines. A method yields findings and keeps no
state; the artifacts a target may lack are Optional fields, guarded where the rule reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ttsdoctor.finding import Finding, Fix, Location, Severity

if TYPE_CHECKING:
    from ttsdoctor.artifacts.errors import BrokenTarget
    from ttsdoctor.artifacts.links import OutsideLink
    from ttsdoctor.artifacts.model_dir import ModelDir
    from ttsdoctor.artifacts.source import SourceFile
    from ttsdoctor.artifacts.training_config import TrainingConfig

# loaded.kind -> the method that checks it
KIND_METHODS = {
    "model_dir": "check_model",
    "training_config": "check_training_config",
    "source": "check_source",
    "link": "check_link",
    "broken": "check_broken",
}


class Rule:
    id: ClassVar[str]
    name: ClassVar[str]  # kebab-case
    summary: ClassVar[str]  # one line: what the rule finds
    severity: ClassVar[Severity]
    # Options a project may set in [tool.ttsdoctor.rules.<ID>]: name -> (type, default). Read as attributes.
    options: ClassVar[dict[str, tuple[type, Any]]] = {}
    # Roles the engine asks of a rule instead of knowing it by name: its findings mean "this input could not
    # be read" (exit code 2), or it reports the suppressions that matched nothing once every rule has run.
    marks_unreadable: ClassVar[bool] = False
    reviews_suppressions: ClassVar[bool] = False

    # One method per kind of target; a rule defines those it checks (the base ones are never called).
    def check_model(self, model: ModelDir) -> Iterator[Finding]:
        raise NotImplementedError

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        raise NotImplementedError

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        raise NotImplementedError

    def check_link(self, link: OutsideLink) -> Iterator[Finding]:
        raise NotImplementedError

    def check_broken(self, broken: BrokenTarget) -> Iterator[Finding]:
        raise NotImplementedError

    _kinds: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        stale = [name for name in ("check", "targets", "needs") if name in cls.__dict__]
        if stale:  # the former untyped interface: such a rule would silently never run
            raise TypeError(
                f"{cls.__name__} defines {', '.join(stale)}: define check_model / check_training_config / "
                "check_source / check_link / check_broken instead (see ttsdoctor/rule.py)"
            )
        cls._kinds = tuple(k for k, method in KIND_METHODS.items() if getattr(cls, method) is not getattr(Rule, method))

    @classmethod
    def kinds(cls) -> tuple[str, ...]:
        """The kinds of target this rule checks: those whose method it defines."""
        return cls._kinds

    @property
    def targets(self) -> tuple[str, ...]:
        return self.kinds()

    def check(self, loaded: Any) -> Iterator[Finding]:
        """The engine's entry: the method for the loaded artifact's kind."""
        method: Any = getattr(self, KIND_METHODS[loaded.kind])
        return iter(method(loaded))

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

    def applies(self, loaded: Any) -> bool:
        return loaded.kind in self.kinds()

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


class ModelOrConfigRule(Rule):
    """A rule that checks a model folder and a training config the same way, through what both expose (weights
    read, tokenizer, declared sizes): it defines `check_either` and checks both kinds."""

    def check_model(self, model: ModelDir) -> Iterator[Finding]:
        return self.check_either(model)

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        return self.check_either(config)

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        raise NotImplementedError
