"""Jupyter / Colab notebooks (.ipynb) as Python sources.

The code cells, in order, become one Python text (names flow between cells as they do when the notebook
runs), each cell opened by a marker comment (`# %% ttsdoctor cell N`). IPython syntax is kept as comments, line
for line, so that line numbers inside a cell never move:
- line magics and shell lines (`%pip install`, `!nvidia-smi`, `x = !ls`, `obj?`) become
  `pass  # ttsdoctor-magic <line>` (a statement, so an `if` holding only a magic still parses), and the lines a
  trailing backslash continues become `# ttsdoctor-magic <line>`;
- a cell magic (`%%time`, `%%capture`) keeps its Python body; any other cell magic (`%%bash`, `%%writefile`)
  comments out the whole cell;
- a cell that still does not parse is commented out as `# ttsdoctor-skip <line>` and reported (a cell that
  parses on a newer Python is an info finding, never an error).

Findings point at the notebook with the cell number (1-based, counting every cell as Jupyter and VS Code do)
and the line in that cell; fixes are applied to the cell's text and only that cell's `source` is replaced in the
JSON, so outputs, metadata and formatting stay as they were.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from typing import Any

import msgspec

MARK = "# %% ttsdoctor cell "
MAGIC = "# ttsdoctor-magic "
PASS_MAGIC = "pass  # ttsdoctor-magic "
SKIP = "# ttsdoctor-skip "
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit", "mprun", "skip"})
_LINE_MAGIC = re.compile(r"^\s*([!%]|\w[\w.\[\], ]*=\s*[!%])|^[^#'\"]*\?\s*$")
# IPython's automagic (on by default): a line starting with a line magic's or a shell alias's name runs it without
# the `%`, as `pip install diffusers` in many notebooks does. Taken as a magic only when the line is not Python, and
# never when what follows the name may open a statement over several lines (`ls = [`, `run(`).
_AUTOMAGIC = re.compile(
    r"^\s*(?:pip|conda|mamba|cd|ls|pwd|env|load_ext|reload_ext|matplotlib|run|cat|cp|mkdir|mv|rm|rmdir)\s+[^\s=(\[{,:]"
)


def _automagic(line: str) -> bool:
    if not _AUTOMAGIC.match(line):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(line.strip())
    except SyntaxError:
        return True
    return False


_UNPREFIX = re.compile(rf"^(\s*)(?:{re.escape(MAGIC)}|{re.escape(SKIP)})(.*)$")
_UNPASS = re.compile(rf"^\s*{re.escape(PASS_MAGIC)}(.*)$")


class Cell(msgspec.Struct):
    index: int  # position among all cells of the notebook (0-based)
    text: str  # the cell's source, as in the file
    as_list: bool  # source stored as a list of lines (nbformat's usual form) or a single string
    first_line: int = 0  # virtual line of the cell's first line (the line after its marker)
    lines: int = 0
    skipped: str | None = None  # why the cell is not checked: a syntax error, or the Python it needs
    skipped_at: int = 1  # the line of the cell (1-based) where Python stopped, for a syntax error


class VirtualNotebook(msgspec.Struct):
    text: str
    cells: list[Cell] = []

    def locate(self, line: int) -> tuple[Cell, int] | None:
        """The cell holding a virtual line, and the line number inside that cell (1-based)."""
        for cell in self.cells:
            if cell.first_line <= line < cell.first_line + max(cell.lines, 1):
                return cell, line - cell.first_line + 1
        return None


def code_cells(notebook: Any) -> list[Cell]:
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return []
    out = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            out.append(Cell(index, "".join(source), True))
        elif isinstance(source, str):
            out.append(Cell(index, source, False))
    return out


def _virtual_lines(cell: Cell) -> list[str]:
    lines = cell.text.splitlines()
    if cell.skipped is not None:
        return [_prefix(line, SKIP) for line in lines]
    out = []
    body_magic = bool(lines) and lines[0].lstrip().startswith("%%")
    python_body = body_magic and lines[0].lstrip()[2:].split(" ")[0].strip() in PYTHON_CELL_MAGICS
    continued = False  # a shell line ending in a backslash goes on on the next line
    last_code = ""  # the last line of Python, whose indentation a magic's `pass` must fit
    for number, line in enumerate(lines):
        if continued or (body_magic and number > 0 and not python_body):
            out.append(_prefix(line, MAGIC))
        elif (body_magic and number == 0) or _LINE_MAGIC.match(line) or _automagic(line):
            # a statement, so that a block holding only a magic still parses, at an indentation Python accepts
            out.append(_fit(line, last_code))
            continued = line.rstrip().endswith("\\")
            continue
        else:
            out.append(line)
            if line.strip() and not line.lstrip().startswith("#"):
                last_code = line
        continued = continued and line.rstrip().endswith("\\")
    return out


def _fit(line: str, last_code: str) -> str:
    """`pass  # ttsdoctor-magic <line>` indented as deep as the line may be: as the block it opens or sits in."""
    indent = len(line) - len(line.lstrip(" \t"))
    previous = len(last_code) - len(last_code.lstrip(" \t"))
    opens_block = last_code.rstrip().endswith(":")
    allowed = indent if opens_block and indent > previous else min(indent, previous)
    return line[:allowed] + PASS_MAGIC + line  # the whole original line after the marker: restored exactly


def _prefix(line: str, prefix: str) -> str:
    # the indentation kept is spaces and tabs only: a no-break space (U+00A0, pasted from web pages) before the
    # prefix is an invalid character for Python, inside the comment it is nothing
    stripped = line.lstrip(" \t")
    return line[: len(line) - len(stripped)] + prefix + stripped


def render(cells: list[Cell]) -> str:
    parts = []
    line = 1
    for cell in cells:
        body = _virtual_lines(cell)
        parts.append(f"{MARK}{cell.index + 1}")
        cell.first_line = line + 1
        cell.lines = len(body)
        parts += body
        line += 1 + len(body)
    return "\n".join(parts) + "\n" if parts else ""


def build(notebook: Any) -> VirtualNotebook:
    """The notebook's code as one Python text that parses: cells that do not parse are commented out.

    Each cell is parsed alone first, as Jupyter runs it: a cell that does not parse alone is skipped, with its own
    error. Judged only in the joined text, a cell left open (a docstring never closed, as in the transformers docs'
    video_classification notebook) is blamed on the cell after it, whose quotes close it."""
    cells = code_cells(notebook)
    for cell in cells:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse("\n".join(_virtual_lines(cell)) + "\n")
        except SyntaxError as exc:
            cell.skipped = PROMPTED if _prompted(cell) else _why_not_parsed(cell, exc)
            cell.skipped_at = (exc.lineno or 1) if cell.skipped.startswith("Python syntax") else 1
        except (RecursionError, MemoryError, ValueError):
            cell.skipped = "could not be parsed"
    for _ in range(len(cells) + 1):
        text = render(cells)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(text)
            return VirtualNotebook(text, cells)
        except SyntaxError as exc:
            found = VirtualNotebook(text, cells).locate(exc.lineno or 0)
            if found is None or found[0].skipped is not None:
                break
            blamed, at = found
            blamed.skipped = _why_not_parsed(blamed, exc)
            blamed.skipped_at = at if blamed.skipped.startswith("Python syntax") else 1
        except (RecursionError, MemoryError, ValueError):
            break
    for cell in cells:  # give up on the rest rather than loop
        cell.skipped = cell.skipped or "could not be parsed"
    return VirtualNotebook(render(cells), cells)


# IPython strips `>>> ` / `... ` prompts from a cell whose first line has one (its classic_prompt transformer): such a
# cell, pasted from a doctest, runs in Jupyter. ttsdoctor does not rewrite it: not checked, and not a syntax error.
PROMPTED = "written with >>> prompts, which IPython strips when it runs the cell"


def _prompted(cell: Cell) -> bool:
    first = next((line for line in cell.text.splitlines() if line.strip()), "")
    return first.startswith(">>>")


def _why_not_parsed(cell: Cell, exc: SyntaxError) -> str:
    from ttsdoctor.artifacts.source import newer_python_needed

    body = "\n".join(_virtual_lines(cell)) + "\n"
    needed = newer_python_needed(body)
    if needed is not None:
        return needed
    return f"Python syntax error: {exc.msg}"


def split(text: str, restore: bool = True) -> dict[int, str]:
    """Cell number (1-based) -> cell text, from a virtual text (after edits), magics restored unless told not."""
    out: dict[int, str] = {}
    current: int | None = None
    lines: list[str] = []
    for line in text.split("\n"):
        if line.startswith(MARK):
            if current is not None:
                out[current] = _join(lines)
            current, lines = int(line[len(MARK) :]), []
        elif current is not None:
            lines.append(_restore(line) if restore else line)
    if current is not None:
        out[current] = _join(lines)
    return out


def _restore(line: str) -> str:
    passed = _UNPASS.match(line)
    if passed:
        return passed.group(1)
    match = _UNPREFIX.match(line)
    return match.group(1) + match.group(2) if match else line


def restore_magics(text: str) -> str:
    return "\n".join(_restore(line) for line in text.split("\n"))


def import_cell(cells: dict[int, str]) -> int | None:
    """The cell a new import goes into: the first that already imports at top level and does not start with a cell
    magic (which must stay its first line), else the first such cell at all."""
    usable = [n for n, text in sorted(cells.items()) if not text.lstrip().startswith(PASS_MAGIC + "%%")]
    importing = [n for n in usable if re.search(r"^(import |from \S+ import )", cells[n], re.MULTILINE)]
    chosen = importing or usable
    return chosen[0] if chosen else None


def _join(lines: list[str]) -> str:
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


def apply_cells(json_text: str, notebook: Any, new_cells: dict[int, str]) -> str:
    """Replace the `source` of the changed cells in the notebook's JSON text, nothing else."""
    from ttsdoctor.artifacts.jsonfile import JsonTextError, locate
    from ttsdoctor.edits import EditError

    changes = []
    for cell in code_cells(notebook):
        new = new_cells.get(cell.index + 1)
        if new is None:
            continue
        old_core = cell.text.rstrip("\n")
        if new.rstrip("\n") == old_core:
            continue
        new = new.rstrip("\n") + cell.text[len(old_core) :]  # the cell's own trailing newlines
        try:
            span = locate(json_text, f"/cells/{cell.index}/source")
        except (JsonTextError, IndexError):
            span = None
        if span is None:
            raise EditError(f"cell {cell.index + 1} has no source in the notebook")
        changes.append((span.value_start, span.value_end, _render_source(json_text, span.value_start, new, cell)))
    for start, end, rendered in sorted(changes, reverse=True):
        json_text = json_text[:start] + rendered + json_text[end:]
    return json_text


def _render_source(json_text: str, start: int, text: str, cell: Cell) -> str:
    if not cell.as_list:
        return json.dumps(text, ensure_ascii=False)
    lines = text.splitlines(keepends=True)
    if not lines:
        return "[]"
    original = json_text[start:]
    match = re.match(r"\[(\s*)", original)
    gap = match.group(1) if match else ""
    if "\n" not in gap:  # a one-line list
        return "[" + ", ".join(json.dumps(line, ensure_ascii=False) for line in lines) + "]"
    indent = gap.split("\n")[-1]
    close_indent = indent[:-1] if indent.endswith(" ") else indent
    close = re.search(r"\n([ \t]*)\]", original)
    if close:
        close_indent = close.group(1)
    body = (",\n" + indent).join(json.dumps(line, ensure_ascii=False) for line in lines)
    return "[\n" + indent + body + "\n" + close_indent + "]"
