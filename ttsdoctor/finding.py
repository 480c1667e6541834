"""The data model every other module speaks: severities, locations, edits, fixes and findings.

This module imports nothing from ttsdoctor. Everything here is plain, immutable data.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import msgspec


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


class Location(msgspec.Struct, frozen=True):
    """Where a finding points: a file, plus a JSON pointer (keys, tensor names) and/or a line."""

    path: str
    pointer: str | None = None
    line: int | None = None
    column: int | None = None
    cell: int | None = None  # notebooks: the cell (1-based, every cell counted); `line` is then the line in it
    file_line: int | None = None  # notebooks: the line of the .ipynb file holding that cell line


# --- Edits: a small closed set. Paths are absolute file paths. -------------------------------
# Each edit says where it applies in a pass over its file (`order`) and which other edit of the same file it
# cannot be combined with (`overlaps`); edits.py applies it. A new edit kind is a class here and its applier there.


class _EditKind:
    order: ClassVar[int] = 1  # token additions (0) before the values that name them (1), imports after (2)

    def overlaps(self, other: Any) -> bool:
        """Both edit the same part of the same file (checked only for different edits of one path)."""
        return False


class _PointerEdit(_EditKind, msgspec.Struct, frozen=True):
    def overlaps(self, other: Any) -> bool:
        if not isinstance(other, _PointerEdit):
            return False
        pa, pb = self.pointer, other.pointer  # type: ignore[attr-defined]
        return bool(pa == pb or pa.startswith(pb + "/") or pb.startswith(pa + "/"))


class SetJsonValue(_PointerEdit, frozen=True):
    path: str
    pointer: str
    value: Any


class RemoveJsonKey(_PointerEdit, frozen=True):
    path: str
    pointer: str


class SetYamlValue(_PointerEdit, frozen=True):
    path: str
    pointer: str
    value: Any


class ReplaceSource(_EditKind, msgspec.Struct, frozen=True):
    """Replace characters [start, end) of a text file (offsets in characters of the decoded text)."""

    path: str
    start: int
    end: int
    text: str

    def overlaps(self, other: Any) -> bool:
        if not isinstance(other, ReplaceSource):
            return False
        a, b = self, other
        return (a.start < b.end and b.start < a.end) or (a.start == a.end == b.start == b.end)


class AddImport(_EditKind, msgspec.Struct, frozen=True):
    """Ensure `from module import name` exists in a Python file."""

    path: str
    module: str
    name: str

    order: ClassVar[int] = 2


class AddSpecialToken(_EditKind, msgspec.Struct, frozen=True):
    """Add a special token to tokenizer.json (and tokenizer_config.json when present) at `token_id`."""

    path: str  # the tokenizer.json
    content: str
    token_id: int

    order: ClassVar[int] = 0


class ResizeTensor(_EditKind, msgspec.Struct, frozen=True):
    """Grow or shrink the first dimension of a tensor in a safetensors file.

    New rows are initialised with the mean of the first `mean_of_rows` existing rows.
    """

    path: str
    tensor: str
    rows: int
    mean_of_rows: int

    def overlaps(self, other: Any) -> bool:
        return isinstance(other, ResizeTensor) and other.tensor == self.tensor


Edit = SetJsonValue | RemoveJsonKey | SetYamlValue | ReplaceSource | AddImport | AddSpecialToken | ResizeTensor


class Fix(msgspec.Struct, frozen=True):
    title: str  # imperative: what the fix does
    applicability: Applicability
    edits: tuple[Edit, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(edit.path for edit in self.edits))


class Finding(msgspec.Struct, frozen=True):
    rule_id: str
    rule_name: str
    severity: Severity
    message: str  # carries the actual values, no trailing period
    location: Location
    evidence: dict[str, Any] = {}  # not compared: two findings are equal when they report the same thing
    fix: Fix | None = None  # not compared either

    def _identity(self) -> tuple[Any, ...]:
        return (self.rule_id, self.rule_name, self.severity, self.message, self.location)

    def __eq__(self, other: object) -> bool:
        return self._identity() == other._identity() if isinstance(other, Finding) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._identity())

    def sort_key(self) -> tuple[str, int, int, int, str, str]:
        loc = self.location
        return (loc.path, loc.cell or 0, loc.line or 0, loc.column or 0, loc.pointer or "", self.rule_id)
