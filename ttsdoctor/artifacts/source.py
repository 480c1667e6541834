"""Python source files: text, AST (with lines and columns) and inline suppressions."""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError, decode_utf8, read_bytes
from ttsdoctor.finding import Location

_NEWLINE = re.compile(r"\r\n|\n|\r")
_SUPPRESS = re.compile(r"#\s*ttsdoctor:\s*ignore(?:\[([A-Za-z0-9_, ]+)\])?")


class SourceFile(msgspec.Struct):
    path: str
    text: str  # for a notebook: its code cells as one Python text (artifacts/notebook.py)
    tree: ast.Module
    suppressions: dict[int, frozenset[str] | None] = {}  # line -> codes (None: all)
    errors: list[ArtifactError] = []
    cache: dict[str, Any] = {}  # derived views (the AST index), built once
    notebook: Any = None  # VirtualNotebook for .ipynb files
    # what was not checked and why: (line, message, broken) where broken means a syntax error, not a newer grammar
    notices: list[tuple[int | None, str, bool]] = []
    json_doc: Any = None  # the notebook's JsonDoc, for positions in the file

    kind = "source"

    @property
    def is_test(self) -> bool:
        """Test code (tests/, test_*.py, *_test.py, conftest.py), which sets odd values on purpose."""
        parts = self.path.replace("\\", "/").split("/")
        name = parts[-1]
        return (
            any(p in ("tests", "test", "testing") for p in parts[:-1])
            or name.startswith("test_")
            or name.endswith("_test.py")
            or name == "conftest.py"
        )

    @property
    def lower(self) -> str:
        """The text in lower case, built once: prefilters look for words in it with `in`, which is ~15x faster than
        a case-insensitive regex alternation over a large file (measured on transformers' models: 0.5 s vs 7 s)."""
        found: str | None = self.cache.get("lower")
        if found is None:
            found = self.cache["lower"] = self.text.lower()
        return found

    def mentions_any_case(self, *words: str) -> bool:
        """Whether the text contains any of `words` (lower-case), in any case."""
        low = self.lower
        return any(w in low for w in words)

    @property
    def stops_at(self) -> tuple[int, str] | None:
        """(line, call) of a top-level statement that ends the script with more code after it: `quit()`, `exit()`,
        `sys.exit(...)`, `os._exit(...)` or `raise SystemExit`, left in after a data-preparation step. What follows
        it does not run as the file stands. None for a notebook, whose cells run one by one."""
        if self.notebook is not None:
            return None
        body = self.tree.body
        for statement in body[:-1]:
            call = statement.value if isinstance(statement, ast.Expr) else None
            if isinstance(call, ast.Call):
                func = call.func
                name = func.id if isinstance(func, ast.Name) else None
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    name = f"{func.value.id}.{func.attr}"
                if name in ("quit", "exit", "sys.exit", "os._exit"):
                    return statement.lineno, f"{name}()"
            if isinstance(statement, ast.Raise) and "SystemExit" in ast.unparse(statement.exc or statement):
                return statement.lineno, "raise SystemExit"
        return None

    def line_name(self, line: int) -> str:
        """How a message names a line: "line 12", or in a notebook "cell 4, line 2"."""
        found = self.notebook.locate(line) if self.notebook is not None else None
        return f"cell {found[0].index + 1}, line {found[1]}" if found is not None else f"line {line}"

    def map_location(self, location: Location) -> Location:
        """A notebook finding's virtual line -> the cell and the line in it (and the line in the .ipynb file)."""
        if self.notebook is None or location.line is None or location.path != self.path:
            return location
        found = self.notebook.locate(location.line)
        if found is None:
            return location
        cell, line = found
        file_line = None
        if self.json_doc is not None:
            pointer = f"/cells/{cell.index}/source" + (f"/{line - 1}" if cell.as_list else "")
            file_line = self.json_doc.position(pointer)[0]
        return Location(self.path, f"/cells/{cell.index}", line, location.column, cell.index + 1, file_line)

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


def newer_python_needed(text: str) -> str | None:
    """When `text` does not parse on this Python but does on a newer grammar: which Python it needs."""
    import sys

    try:
        import libcst

        libcst.parse_module(text)
    except Exception:  # libcst's ParserSyntaxError and anything else: not valid on a newer grammar either
        return None
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"uses Python grammar newer than {running} (e.g. 3.12 f-strings); run ttsdoctor on Python 3.12+ to check it"


def _parse(path: str, text: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences and the like are not ours to report
        return ast.parse(text, filename=path)


def load_source(path: str) -> SourceFile:
    if path.endswith(".ipynb"):
        return load_notebook(path)
    text = decode_utf8(path, read_bytes(path, "source_bytes"))
    try:
        tree = _parse(path, text)
    except SyntaxError as exc:
        newer = newer_python_needed(text)
        empty = SourceFile(path=path, text="", tree=ast.Module(body=[], type_ignores=[]))
        if newer is not None:
            empty.notices.append((None, f"not checked: this file {newer}", False))
        else:  # a file Python cannot run (Python 2, a template): a finding, not an unreadable input
            empty.notices.append(
                (exc.lineno, f"not checked: Python syntax error: {exc.msg} at line {exc.lineno}", True)
            )
        return empty
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ArtifactError(path, f"cannot parse Python source ({type(exc).__name__})") from None
    return SourceFile(path=path, text=text, tree=tree, suppressions=parse_suppressions(text))


def load_notebook(path: str) -> SourceFile:
    from ttsdoctor.artifacts import notebook
    from ttsdoctor.artifacts.jsonfile import parse_json_text

    raw = decode_utf8(path, read_bytes(path, "notebook_bytes"))
    if not raw.strip():  # a placeholder for a notebook not written yet: nothing to check, not an unreadable input
        empty = SourceFile(path=path, text="", tree=ast.Module(body=[], type_ignores=[]))
        empty.notices.append((None, "not checked: the notebook file is empty (Jupyter cannot open it either)", True))
        return empty
    doc = parse_json_text(path, raw)
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("cells"), list):
        raise ArtifactError(path, "is not a Jupyter notebook (no cells list)")
    virtual = notebook.build(doc.data)
    try:
        tree = _parse(path, virtual.text)
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        raise ArtifactError(path, f"cannot parse the notebook's code cells ({type(exc).__name__})") from None
    source = SourceFile(
        path=path,
        text=virtual.text,
        tree=tree,
        suppressions=parse_suppressions(virtual.text),
        notebook=virtual,
        json_doc=doc,
    )
    for cell in virtual.cells:
        if cell.skipped is not None:
            newer = cell.skipped.startswith("uses")
            runs = newer or cell.skipped == notebook.PROMPTED  # runs where it is meant to: info, not a broken cell
            why = f"it {cell.skipped}" if newer else cell.skipped
            source.notices.append((cell.first_line + cell.skipped_at - 1, f"cell not checked: {why}", not runs))
    return source
