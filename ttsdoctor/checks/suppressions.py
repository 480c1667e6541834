"""SUP: suppressions that suppress nothing. Produced by the engine, which is the one that sees them used."""

from __future__ import annotations

from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import Rule


class UnusedSuppression(Rule):
    id = "SUP001"
    name = "unused-suppression"
    summary = "A `# ttsdoctor: ignore[...]` comment or a [[tool.ttsdoctor.suppress]] entry that suppresses nothing"
    severity = Severity.WARNING
    reviews_suppressions = True  # checks no target: the engine hands it what matched nothing, after every rule

    def unused(self, path: str, line: int | None, codes: str) -> Finding:
        return self.finding(
            f"suppression of {codes} matches no finding: remove it, or it will hide the next real one",
            path,
            line=line,
            column=1 if line else None,
        )
