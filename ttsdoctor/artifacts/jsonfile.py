"""JSON files with the problems a careful reader notices, and the line of every key.

`load_json` never raises anything but ArtifactError. Duplicate keys and NaN/Infinity are accepted
(Python and transformers accept them) but recorded as `problems` so a rule can report them.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError, decode_utf8, read_bytes

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def escape_pointer_part(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def unescape_pointer_part(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


class Span(msgspec.Struct, frozen=True):
    """Where a JSON value lies in its text: its key (object members), its value, and its kind."""

    key_start: int | None
    value_start: int
    value_end: int
    kind: str  # "object" | "array" | "scalar"


class JsonTextError(ValueError):
    pass


def _skip_ws(text: str, at: int) -> int:
    return _WS.match(text, at).end()  # type: ignore[union-attr]


def _value_end(text: str, at: int) -> int:
    try:
        return _DECODER.raw_decode(text, at)[1]  # C speed: skipping a 150k-entry added_tokens_decoder is cheap
    except (ValueError, RecursionError) as exc:
        raise JsonTextError(f"no JSON value at offset {at}") from exc


def _span_at(text: str, key_start: int | None, at: int) -> Span:
    kind = "object" if text[at : at + 1] == "{" else "array" if text[at : at + 1] == "[" else "scalar"
    return Span(key_start, at, _value_end(text, at), kind)


def members(text: str, container: Span) -> Iterator[tuple[str, Span]]:
    """The direct members of an object or array span, in order: (key or index, span). Lazily: a caller that
    stops early skips the rest."""
    at = _skip_ws(text, container.value_start + 1)
    close = "}" if container.kind == "object" else "]"
    index = 0
    while at < len(text) and text[at] != close:
        if container.kind == "object":
            if text[at] != '"':
                raise JsonTextError(f"expected a key at offset {at}")
            key, after = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
            colon = _skip_ws(text, after)
            if text[colon : colon + 1] != ":":
                raise JsonTextError(f"expected ':' at offset {colon}")
            span = _span_at(text, at, _skip_ws(text, colon + 1))
            yield key, span
        else:
            span = _span_at(text, None, at)
            yield str(index), span
            index += 1
        at = _skip_ws(text, span.value_end)
        if text[at : at + 1] == ",":
            at = _skip_ws(text, at + 1)


def locate(text: str, pointer: str) -> Span | None:
    """The span of the value at a JSON pointer ("" is the whole document), None when there is none.

    Only the containers on the way are walked member by member; every other value is skipped by the C
    decoder, so finding one key costs about one `json.loads` whatever the size of the file. With duplicate
    keys the first one is found."""
    span = _span_at(text, None, _skip_ws(text, 0))
    for raw in pointer.split("/")[1:] if pointer else []:
        if span.kind == "scalar":
            return None
        part = unescape_pointer_part(raw)
        if span.kind == "array":
            if not part.isdigit():
                return None
            part = str(int(part))
        found = next((member for key, member in members(text, span) if key == part), None)
        if found is None:
            return None
        span = found
    return span


class JsonDoc(msgspec.Struct):
    path: str
    data: Any
    text: str
    problems: list[tuple[str, str]] = []  # (pointer, problem)
    _positions: dict[str, tuple[int, int] | None] = {}

    def position(self, pointer: str) -> tuple[int | None, int | None]:
        """(line, column) of a key (or array element), 1-based; (None, None) when unknown. Computed on demand,
        for that pointer only."""
        if pointer not in self._positions:
            self._positions[pointer] = position_in(self.text, pointer)
        found = self._positions[pointer]
        return found if found else (None, None)

    def positions(self, pointers: list[str]) -> list[tuple[int | None, int | None]]:
        """`position` of many pointers, found in one walk of the text."""
        missing = [pointer for pointer in pointers if pointer not in self._positions]
        if missing:
            self._positions.update(positions_in(self.text, missing))
        return [self._positions[pointer] or (None, None) for pointer in pointers]


def positions_in(text: str, pointers: list[str]) -> dict[str, tuple[int, int] | None]:
    """(line, column) of many pointers in one walk: `position_in` for each would decode the document once per
    pointer (minutes for an 800 KB JSON with thousands of values). Only containers on the way to a wanted pointer
    are walked; lines come from a bisect over the newline offsets."""
    wanted = set(pointers)
    prefixes = {""}
    for pointer in wanted:
        at = pointer.rfind("/")
        while at > 0 and pointer[:at] not in prefixes:  # a prefix already in has its own prefixes in too
            prefixes.add(pointer[:at])
            at = pointer.rfind("/", 0, at)
    offsets: dict[str, int] = {}
    try:
        root = _span_at(text, None, _skip_ws(text, 0))
        pending = [("", root)]
        while pending:
            pointer, span = pending.pop()
            if span.kind == "scalar":
                continue
            for key, member in members(text, span):
                child = f"{pointer}/{escape_pointer_part(key)}"
                if child in offsets:
                    continue  # a repeated key: the first one is found, as by locate
                if child in wanted:
                    offsets[child] = member.key_start if member.key_start is not None else member.value_start
                if child in prefixes:
                    pending.append((child, member))
    except (JsonTextError, IndexError):
        pass  # what was found before the bad text stands; the rest is unknown
    newlines = [match.start() for match in re.finditer("\n", text)] if offsets else []
    found: dict[str, tuple[int, int] | None] = dict.fromkeys(wanted)
    for pointer, offset in offsets.items():
        line = bisect.bisect_left(newlines, offset)  # newlines before the offset
        found[pointer] = (line + 1, offset - (newlines[line - 1] + 1 if line else 0) + 1)
    if "" in wanted:
        found[""] = position_in(text, "")
    return found


def position_in(text: str, pointer: str) -> tuple[int, int] | None:
    try:
        span = locate(text, pointer)
    except (JsonTextError, IndexError):
        return None
    if span is None:
        return None
    offset = span.key_start if span.key_start is not None else span.value_start
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse_json_text(path: str, text: str) -> JsonDoc:
    problems: list[tuple[str, str]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)  # the last value of a repeated key wins, as in json.loads
        if len(out) != len(pairs):
            seen: dict[str, Any] = {}
            for key, value in pairs:
                if key in seen:
                    problems.append(
                        ("", f"duplicate key {key!r}: the last value wins ({value!r} over {seen[key]!r})")
                        if value != seen[key]
                        else ("", f"repeated key {key!r}, with the same value both times")
                    )
                seen[key] = value
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


_TRAILING_COMMA = re.compile(r'"(?:[^"\\]|\\.)*"|,(?=\s*[}\]])')


def strip_json_comments(text: str) -> str | None:
    """`//` and `/* */` comments and trailing commas (`[1, 2,]`) blanked out (strings untouched, every offset and line
    kept), or None when there are none.

    Some TTS toolkits keep comments in their JSON configs and read them with a loader that strips them or with json5
    (Amphion's exp_config.json files have both)."""
    found = False

    def blank(match: re.Match[str]) -> str:
        nonlocal found
        token = match.group()
        if token.startswith('"'):
            return token
        found = True
        return re.sub(r"[^\n]", " ", token)

    stripped = _TRAILING_COMMA.sub(blank, _JSON_WITH_COMMENTS.sub(blank, text))
    return stripped if found else None


_BARE_KEY = re.compile(r'"(?:[^"\\]|\\.)*"|(?<=[{,])(\s*)([A-Za-z_$][\w$]*)(\s*:)')


def quote_json5_keys(text: str) -> str | None:
    """JSON5's unquoted keys (`{hop_lengths: [512]}`) quoted, or None when there are none. Each quoted key moves the
    rest of its line two columns right; lines stay where they are."""
    found = False

    def quote(match: re.Match[str]) -> str:
        nonlocal found
        if match.group(2) is None:
            return match.group()
        found = True
        return f'{match.group(1)}"{match.group(2)}"{match.group(3)}'

    quoted = _BARE_KEY.sub(quote, text)
    return quoted if found else None


def load_json(path: str, expect_object: bool = True, budget: str = "json_bytes") -> JsonDoc:
    text = decode_utf8(path, read_bytes(path, budget))
    doc = parse_json_text(path, text)
    if expect_object and not isinstance(doc.data, dict):
        raise ArtifactError(path, f"expected a JSON object at the top level, found {type(doc.data).__name__}")
    return doc
