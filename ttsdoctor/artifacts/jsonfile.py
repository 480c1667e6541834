"""JSON files with the problems a careful reader notices, and the line of every key.

`load_json` never raises anything but ArtifactError. Duplicate keys and NaN/Infinity are accepted
(Python and transformers accept them) but recorded as `problems` so a rule can report them.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ttsdoctor.artifacts.errors import ArtifactError, decode_utf8, read_bytes

MAX_POSITION_SCAN_BYTES = 2 << 20  # key lines are computed for files below this size

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def escape_pointer_part(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer_of(*parts: str | int) -> str:
    return "".join("/" + escape_pointer_part(p) for p in parts)


@dataclass
class JsonDoc:
    path: str
    data: Any
    text: str
    problems: list[tuple[str, str]] = field(default_factory=list)  # (pointer, problem)
    _positions: dict[str, tuple[int, int]] | None = None

    def position(self, pointer: str) -> tuple[int | None, int | None]:
        """(line, column) of a key, 1-based; (None, None) when unknown."""
        if self._positions is None:
            self._positions = key_positions(self.text) if len(self.text) <= MAX_POSITION_SCAN_BYTES else {}
        found = self._positions.get(pointer)
        return found if found else (None, None)


def key_positions(text: str) -> dict[str, tuple[int, int]]:
    """Map each JSON pointer to the (line, column) where its key (or array element) starts."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    positions: dict[str, tuple[int, int]] = {}
    # stack frames: [kind, pointer, next_index, pending_key]
    stack: list[list[Any]] = []
    expect_key = False
    for match in _TOKEN.finditer(text):
        tok = match.group()
        start = match.start()
        if tok in "{[":
            if stack and stack[-1][0] == "array":
                frame = stack[-1]
                ptr = frame[1] + "/" + str(frame[2])
                _record(positions, line_starts, ptr, start)
                child = ptr
            elif stack:
                child = stack[-1][1] + "/" + escape_pointer_part(stack[-1][3] or "")
            else:
                child = ""
            stack.append(["object" if tok == "{" else "array", child, 0, None])
            expect_key = tok == "{"
        elif tok in "}]":
            if stack:
                stack.pop()
            if stack and stack[-1][0] == "array":
                stack[-1][2] += 1
            expect_key = False
        elif tok == ",":
            if stack and stack[-1][0] == "object":
                expect_key = True
        elif tok == ":":
            expect_key = False
        else:
            if not stack:
                continue
            frame = stack[-1]
            if frame[0] == "object" and expect_key:
                try:
                    key = json.loads(tok)
                except ValueError:
                    key = tok.strip('"')
                frame[3] = key
                _record(positions, line_starts, frame[1] + "/" + escape_pointer_part(key), start)
            elif frame[0] == "array":
                _record(positions, line_starts, frame[1] + "/" + str(frame[2]), start)
                frame[2] += 1
    return positions


def _record(positions: dict[str, tuple[int, int]], line_starts: list[int], ptr: str, offset: int) -> None:
    if ptr in positions:
        return
    line = bisect.bisect_right(line_starts, offset)
    positions[ptr] = (line, offset - line_starts[line - 1] + 1)


def parse_json_text(path: str, text: str) -> JsonDoc:
    problems: list[tuple[str, str]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                problems.append(("", f"duplicate key {key!r}: the last value wins"))
            out[key] = value
        return out

    def constant_hook(name: str) -> float:
        problems.append(("", f"non-standard JSON constant {name}"))
        return float(name.replace("Infinity", "inf"))

    if not text.strip():
        raise ArtifactError(path, "file is empty")
    try:
        data = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=constant_hook)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            path, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", exc.lineno, exc.colno
        ) from None
    except RecursionError:
        raise ArtifactError(path, "invalid JSON: nested too deeply to read") from None
    return JsonDoc(path=path, data=data, text=text, problems=problems)


_JSON_WITH_COMMENTS = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


def strip_json_comments(text: str) -> str | None:
    """`//` and `/* */` comments blanked out (strings untouched, line numbers kept), or None when there are none.

    Some TTS toolkits keep comments in their JSON configs and strip them in their own loader."""
    found = False

    def blank(match: re.Match[str]) -> str:
        nonlocal found
        token = match.group()
        if token.startswith('"'):
            return token
        found = True
        return re.sub(r"[^\n]", " ", token)

    stripped = _JSON_WITH_COMMENTS.sub(blank, text)
    return stripped if found else None


def load_json(path: str, expect_object: bool = True, budget: str = "json_bytes") -> JsonDoc:
    text = decode_utf8(path, read_bytes(path, budget))
    doc = parse_json_text(path, text)
    if expect_object and not isinstance(doc.data, dict):
        raise ArtifactError(path, f"expected a JSON object at the top level, found {type(doc.data).__name__}")
    return doc
