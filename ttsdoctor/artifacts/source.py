"""Python source files: text, AST (with lines and columns) and inline suppressions."""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from dataclasses import dataclass, field
from typing import Any

from ttsdoctor.artifacts.errors import ArtifactError, decode_utf8, read_bytes

MAX_SOURCE_BYTES = 8 << 20
_NEWLINE = re.compile(r"\r\n|\n|\r")
_SUPPRESS = re.compile(r"#\s*ttsdoctor:\s*ignore(?:\[([A-Za-z0-9_, ]+)\])?")


@dataclass
class SourceFile:
    path: str
    text: str
    tree: ast.Module
    suppressions: dict[int, frozenset[str] | None] = field(default_factory=dict)  # line -> codes (None: all)
    errors: list[ArtifactError] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # derived views (the AST index), built once

    kind = "source"

    def line_offsets(self) -> list[int]:
        """Offset of the start of each line (and the end of the text)."""
        return [0, *(m.end() for m in _NEWLINE.finditer(self.text))] + (
            [len(self.text)] if self.text and not self.text.endswith("\n") else []
        )


def parse_suppressions(text: str, python: bool = True) -> dict[int, frozenset[str] | None]:
    """`# ttsdoctor: ignore[CODE, ...]` comments by line. In Python only real comments count (a string that
    mentions the syntax, as in ttsdoctor's own docs and tests, does not)."""
    out: dict[int, frozenset[str] | None] = {}
    if "ttsdoctor" not in text:
        return out
    comments: list[tuple[int, str]] = []
    if python:
        try:
            for token in tokenize.generate_tokens(io.StringIO(text).readline):
                if token.type == tokenize.COMMENT and "ttsdoctor" in token.string:
                    comments.append((token.start[0], token.string))
        except (tokenize.TokenError, SyntaxError, IndentationError):
            comments = []
    else:
        comments = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if "#" in line]
    for number, comment in comments:
        match = _SUPPRESS.search(comment)
        if match:
            codes = match.group(1)
            out[number] = frozenset(c.strip() for c in codes.split(",") if c.strip()) if codes else None
    return out


def load_source(path: str) -> SourceFile:
    text = decode_utf8(path, read_bytes(path, MAX_SOURCE_BYTES))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences and the like are not ours to report
            tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise ArtifactError(
            path, f"Python syntax error: {exc.msg} at line {exc.lineno}", exc.lineno, exc.offset
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ArtifactError(path, f"cannot parse Python source ({type(exc).__name__})") from None
    return SourceFile(path=path, text=text, tree=tree, suppressions=parse_suppressions(text))
