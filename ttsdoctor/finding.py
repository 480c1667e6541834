"""The data model every other module speaks: severities, locations, edits, fixes and findings.

This module imports nothing from ttsdoctor. Everything here is plain, immutable data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


class Applicability(enum.Enum):
    SAFE = "safe"  # cannot change model behaviour beyond the bug
    UNSAFE = "unsafe"  # changes weights or may change outputs: needs --unsafe-fixes
    DISPLAY_ONLY = "display-only"  # shown, never applied


@dataclass(frozen=True)
class Location:
    """Where a finding points: a file, plus a JSON pointer (keys, tensor names) and/or a line."""

    path: str
    pointer: str | None = None
    line: int | None = None
    column: int | None = None
    cell: int | None = None  # notebooks: the cell (1-based, every cell counted); `line` is then the line in it
    file_line: int | None = None  # notebooks: the line of the .ipynb file holding that cell line


# --- Edits: a small closed set. Paths are absolute file paths. -------------------------------


@dataclass(frozen=True)
class SetJsonValue:
    path: str
    pointer: str
    value: Any


@dataclass(frozen=True)
class RemoveJsonKey:
    path: str
    pointer: str


@dataclass(frozen=True)
class SetYamlValue:
    path: str
    pointer: str
    value: Any


@dataclass(frozen=True)
class ReplaceSource:
    """Replace characters [start, end) of a text file (offsets in characters of the decoded text)."""

    path: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class AddImport:
    """Ensure `from module import name` exists in a Python file."""

    path: str
    module: str
    name: str


@dataclass(frozen=True)
class AddSpecialToken:
    """Add a special token to tokenizer.json (and tokenizer_config.json when present) at `token_id`."""

    path: str  # the tokenizer.json
    content: str
    token_id: int


@dataclass(frozen=True)
class ResizeTensor:
    """Grow or shrink the first dimension of a tensor in a safetensors file.

    New rows are initialised with the mean of the first `mean_of_rows` existing rows.
    """

    path: str
    tensor: str
    rows: int
    mean_of_rows: int


Edit = SetJsonValue | RemoveJsonKey | SetYamlValue | ReplaceSource | AddImport | AddSpecialToken | ResizeTensor


@dataclass(frozen=True)
class Fix:
    title: str  # imperative: what the fix does
    applicability: Applicability
    edits: tuple[Edit, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(edit.path for edit in self.edits))


@dataclass(frozen=True)
class Finding:
    rule_id: str
    rule_name: str
    severity: Severity
    message: str  # carries the actual values, no trailing period
    location: Location
    evidence: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fix: Fix | None = field(default=None, compare=False, hash=False)

    def sort_key(self) -> tuple[str, int, int, int, str, str]:
        loc = self.location
        return (loc.path, loc.cell or 0, loc.line or 0, loc.column or 0, loc.pointer or "", self.rule_id)
