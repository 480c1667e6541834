"""Appliers for each kind of edit: text in, text out (weights: a new file streamed beside the old one).

Every applier keeps what it does not change byte for byte: JSON and YAML values are spliced into the
original text (key order, indentation, comments, trailing newline stay), Python edits are character
ranges plus an `ast`-placed line for imports. Each result is parsed again; an edit that would break parsing raises
EditError and its fix is dropped.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ttsdoctor.artifacts.jsonfile import JsonTextError, Span, locate, members, unescape_pointer_part
from ttsdoctor.finding import (
    AddImport,
    AddSpecialToken,
    Edit,
    RemoveJsonKey,
    ReplaceSource,
    ResizeTensor,
    SetJsonValue,
    SetYamlValue,
)

if TYPE_CHECKING:
    from ttsdoctor.artifacts.tensors import WeightFile


class EditError(Exception):
    pass


def _locate(text: str, pointer: str) -> Span | None:
    try:
        return locate(text, pointer)
    except (JsonTextError, IndexError) as exc:
        raise EditError(f"the JSON text cannot be edited at {pointer or '/'}: {exc}") from None


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _line_indent(text: str, offset: int) -> str:
    line_start = text.rfind("\n", 0, offset) + 1
    return re.match(r"[ \t]*", text[line_start:]).group()  # type: ignore[union-attr]


def set_json_value(text: str, pointer: str, value: Any) -> str:
    if not text.strip():
        text = "{}\n"
    span = _locate(text, pointer)
    if span is not None:
        return text[: span.value_start] + _dump(value) + text[span.value_end :]
    parent_ptr, _, key = pointer.rpartition("/")
    parent = _locate(text, parent_ptr)
    if parent is None:
        raise EditError(f"no JSON value at {parent_ptr or '/'} to add {key!r} to")
    close = parent.value_end - 1
    if parent.kind not in ("array", "object"):
        raise EditError(f"{parent_ptr} is not a container")
    if parent.kind == "array" and key != "-":
        raise EditError(f"array insert needs '-', got {key!r}")
    spans = [member for _, member in members(text, parent)]
    if spans:
        last = spans[-1]
        first = spans[0]
        anchor = first.key_start if first.key_start is not None else first.value_start
        multiline = "\n" in text[parent.value_start : anchor]
        indent = _line_indent(text, anchor)
        sep = ",\n" + indent if multiline else ", "
    else:
        indent = _line_indent(text, parent.value_start) + "  "
        multiline = True
    rendered = _dump(value)
    if multiline and isinstance(value, (dict, list)) and value:
        rendered = json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n" + indent)
    entry = rendered if parent.kind == "array" else f"{_dump(unescape_pointer_part(key))}: {rendered}"
    if spans:
        return text[: last.value_end] + sep + entry + text[last.value_end :]
    outer = _line_indent(text, parent.value_start)
    return text[:close] + f"\n{indent}{entry}\n{outer}" + text[close:]


def remove_json_key(text: str, pointer: str) -> str:
    span = _locate(text, pointer) if pointer else None
    if span is None:
        raise EditError(f"no JSON value at {pointer}")
    start = span.key_start if span.key_start is not None else span.value_start
    after = re.compile(r"\s*,\s*").match(text, span.value_end)
    if after:  # not the last member: drop it with the comma and the space up to the next member
        return text[:start] + text[after.end() :]
    head = text[:start].rstrip()
    if head.endswith(","):
        return head[:-1] + text[span.value_end :]
    return head + text[span.value_end :]


def apply_json(text: str, edits: list[Edit]) -> str:
    for edit in edits:
        if isinstance(edit, SetJsonValue):
            text = set_json_value(text, edit.pointer, edit.value)
        elif isinstance(edit, RemoveJsonKey):
            text = remove_json_key(text, edit.pointer)
        elif isinstance(edit, AddSpecialToken):
            entry = {
                "id": edit.token_id,
                "content": edit.content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            text = set_json_value(text, "/added_tokens/-", entry)
        else:
            raise EditError(f"{type(edit).__name__} does not apply to JSON")
    try:
        json.loads(text)
    except ValueError as exc:
        raise EditError(f"the edited JSON does not parse: {exc}") from None
    return text


# --- YAML ---------------------------------------------------------------------------------------

_YAML_SCALAR_END = re.compile(r"\s+#|\s*$")
_YAML_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'')  # a scalar in quotes ends at its quote
_YAML_FLOW_SCALAR_END = re.compile(r"\s*[,}\]]|\s+#|\s*$")  # inside {a: 1, b: 2} a plain scalar ends at , } ]


def set_yaml_value(text: str, pointer: str, value: Any) -> str:
    """Replace a scalar in place using ruamel's positions; comments and layout stay untouched."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        raise EditError(f"the YAML does not parse: {exc}"[:300]) from None
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    key: Any = int(last) if isinstance(node, list) else last
    if isinstance(value, (dict, list)) or key not in (range(len(node)) if isinstance(node, list) else node):
        raise EditError(f"only existing scalars are edited in YAML ({pointer})")
    anchor = getattr(getattr(node[key], "anchor", None), "value", None)
    if anchor is not None:  # `&name 3000` or `*name`: the value is shared, editing one place changes others
        raise EditError(f"{pointer} is the YAML anchor or alias {anchor!r}: edit it by hand")
    lc = getattr(node, "lc")  # noqa: B009 - ruamel's position info, not in the list type
    line, col = lc.item(key) if isinstance(node, list) else lc.value(key)
    lines = text.splitlines(keepends=True)
    current = lines[line]
    flow = getattr(node, "fa", None) is not None and node.fa.flow_style()
    quoted = _YAML_QUOTED.match(current, col)
    end_match = None if quoted else (_YAML_FLOW_SCALAR_END if flow else _YAML_SCALAR_END).search(current, col)
    end = quoted.end() if quoted else end_match.start() if end_match else len(current.rstrip("\r\n"))
    rendered = (
        json.dumps(value)
        if isinstance(value, str)
        else ("true" if value is True else "false" if value is False else str(value))
    )
    lines[line] = current[:col] + rendered + current[end:]
    new_text = "".join(lines)
    check = yaml.load(new_text)
    for part in parts[:-1]:
        check = check[int(part)] if isinstance(check, list) else check[part]
    if check[key] != value:
        raise EditError(f"YAML edit at {pointer} did not produce {value!r}")
    return new_text


def apply_yaml(text: str, edits: list[Edit]) -> str:
    for edit in edits:
        if not isinstance(edit, SetYamlValue):
            raise EditError(f"{type(edit).__name__} does not apply to YAML")
        text = set_yaml_value(text, edit.pointer, edit.value)
    return text


# --- Python -------------------------------------------------------------------------------------


def add_import(text: str, module: str, name: str) -> str:
    """Add `from module import name` after the module's leading imports (after its docstring and
    `from __future__` imports when it has no other). Nothing is added when the import is already there.
    Plain `ast` and a line splice: linear in the file, and no C parser to crash on a deeply nested expression."""
    import ast

    try:
        tree = ast.parse(text)
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        raise EditError(f"cannot add an import: the file does not parse ({type(exc).__name__})") from None
    after = 0  # the line after which the import goes (0: the top of the file)
    for index, node in enumerate(tree.body):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == module
            and node.level == 0
            and any(alias.name == name and alias.asname in (None, name) for alias in node.names)
        ):
            return text
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            after = node.end_lineno or node.lineno
        elif index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            after = node.end_lineno or node.lineno  # the module docstring
        else:
            break
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    if after and after <= len(lines) and not lines[after - 1].endswith(("\n", "\r")):
        lines[after - 1] += newline
    lines.insert(after, f"from {module} import {name}{newline}")
    return "".join(lines)


def apply_python(text: str, edits: list[Edit]) -> str:
    import ast

    ranges = sorted((e for e in edits if isinstance(e, ReplaceSource)), key=lambda e: (e.start, e.end), reverse=True)
    for replace in ranges:
        text = text[: replace.start] + replace.text + text[replace.end :]
    for edit in edits:
        if isinstance(edit, AddImport):
            text = add_import(text, edit.module, edit.name)
        elif not isinstance(edit, ReplaceSource):
            raise EditError(f"{type(edit).__name__} does not apply to Python")
    try:  # compiled, never run: catches what parses but cannot compile ('return' outside a function ...)
        compile(text, "<fixed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)  # notebooks await
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, SyntaxError) else ""
        raise EditError(f"the edited Python does not compile: {getattr(exc, 'msg', exc)}{where}") from None
    return text


def apply_text(path: str, text: str, edits: list[Edit]) -> str:
    """The file's text with the edits applied. Edits count characters after a byte-order mark (the loaders
    drop it), so the mark is set aside and put back."""
    if text.startswith("\ufeff"):
        return "\ufeff" + apply_text(path, text[1:], edits)
    if path.endswith(".json"):
        return apply_json(text, edits)
    if path.endswith((".yaml", ".yml")):
        return apply_yaml(text, edits)
    if path.endswith(".py"):
        return apply_python(text, edits)
    if path.endswith(".ipynb"):
        return apply_notebook(text, edits)
    raise EditError(f"no applier for {path}")


def apply_notebook(text: str, edits: list[Edit]) -> str:
    """Python edits on a notebook's code (the virtual text its findings point into), written back cell by cell."""
    from ttsdoctor.artifacts import notebook

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EditError(f"the notebook is not valid JSON: {exc}") from None
    virtual = notebook.build(data)
    edited = apply_python(virtual.text, [e for e in edits if not isinstance(e, AddImport)])
    cells = notebook.split(edited, restore=False)
    imports = [e for e in edits if isinstance(e, AddImport)]
    if imports:  # into a cell that imports, never above a cell magic such as %%capture
        target = notebook.import_cell(cells)
        if target is None:
            raise EditError("the notebook has no code cell to add an import to")
        for edit in imports:
            cells[target] = add_import(cells[target] + "\n", edit.module, edit.name).rstrip("\n")
    restored = {number: notebook.restore_magics(cell) for number, cell in cells.items()}
    return notebook.apply_cells(text, data, restored)


# --- weights ------------------------------------------------------------------------------------


def _to_dtype_bytes(values, dtype: str) -> bytes:  # values: float32 numpy array
    import numpy as np

    if dtype == "BF16":
        bits = values.astype(np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return rounded.astype("<u2").tobytes()
    return values.astype({"F32": "<f4", "F16": "<f2", "F64": "<f8"}[dtype]).tobytes()


def resize_plan(path: str, resizes: list[ResizeTensor]) -> list[str]:
    """Human summary of what a resize does, for the dry run; raises EditError when it cannot be done."""
    from ttsdoctor.artifacts.errors import ArtifactError
    from ttsdoctor.artifacts.weights import load_weight_file

    try:
        source = load_weight_file(path)
    except ArtifactError as exc:
        raise EditError(str(exc)) from None
    if source.format != "safetensors":
        _check_pickle_rewritable(path, source)
    out = []
    for edit in resizes:
        info = source.tensors.get(edit.tensor)
        if info is None:
            raise EditError(f"{path} has no tensor {edit.tensor!r}")
        old = list(info.shape)
        new = [edit.rows, *old[1:]]
        grow = edit.rows - old[0]
        how = f"{grow} new rows = mean of rows 0..{edit.mean_of_rows - 1}" if grow > 0 else f"{-grow} rows dropped"
        out.append(f"{edit.tensor} {old} -> {new} ({how})")
    return out


def _check_pickle_rewritable(path: str, source: WeightFile) -> None:
    import importlib.util

    from ttsdoctor.fix_policy import pickle_rewrite_refusal

    refusal = pickle_rewrite_refusal(source)
    if refusal is not None:
        raise EditError(f"{path} {refusal}")
    if importlib.util.find_spec("torch") is None:
        raise EditError(f"rewriting {path} needs torch: pip install 'ttsdoctor[smoke]'")


def resize_writer(path: str, resizes: list[ResizeTensor]):
    """A `write(fh)` that writes a copy of a weights file with some tensors resized (first dimension)."""
    if path.endswith(".safetensors"):
        return _safetensors_resize_writer(path, resizes)
    return _pickle_resize_writer(path, resizes)


def _pickle_resize_writer(path: str, resizes: list[ResizeTensor]):
    """Resize tensors of a torch zip checkpoint through torch itself.

    The checkpoint is first read by ttsdoctor's inert unpickler, which must find nothing but
    tensor-rebuilding globals, and only then loaded with `torch.load(weights_only=True)`: no code in the file
    can run. Everything else in the checkpoint (nested dicts, configs, other tensors) is saved back as loaded.
    """
    from ttsdoctor.artifacts.pickles import read_pickle_checkpoint

    _check_pickle_rewritable(path, read_pickle_checkpoint(path))
    import torch  # only here: rewriting a pickle checkpoint is the one fix that needs it

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # weights_only refusals and damaged archives alike
        raise EditError(f"torch.load(weights_only=True) refused {path}: {exc}"[:300]) from None
    slots: dict[str, tuple[Any, Any]] = {}
    _tensor_slots(obj, "", slots, torch.Tensor)
    done: dict[tuple[Any, ...], Any] = {}  # tensors tied to one storage stay tied
    for edit in resizes:
        if edit.tensor not in slots:
            raise EditError(f"{path} has no tensor {edit.tensor!r}")
        container, key = slots[edit.tensor]
        old = container[key]
        if old.dim() not in (1, 2) or not old.is_floating_point():
            raise EditError(f"cannot resize {edit.tensor!r} in {path}: {old.dim()}-D {old.dtype}")
        tie = (old.untyped_storage().data_ptr(), old.storage_offset(), tuple(old.shape))
        if tie not in done:
            keep = min(old.shape[0], edit.rows)
            new = torch.empty((edit.rows, *old.shape[1:]), dtype=old.dtype)
            new[:keep] = old[:keep]
            if edit.rows > old.shape[0]:
                base = old[: max(1, min(edit.mean_of_rows, old.shape[0]))]
                mean = base.to(torch.float64).mean(dim=0).to(torch.float32).to(old.dtype)
                new[old.shape[0] :] = mean
            if isinstance(old, torch.nn.Parameter):
                new = torch.nn.Parameter(new, requires_grad=old.requires_grad)
            done[tie] = new
        container[key] = done[tie]

    def write(fh: Any) -> None:
        torch.save(obj, fh)

    return write


def _tensor_slots(obj: Any, prefix: str, out: dict[str, tuple[Any, Any]], tensor_type: type, depth: int = 0) -> None:
    """name -> (container, key) for every tensor, named as the inert reader names them (dotted dict keys)."""
    if depth > 12 or not isinstance(obj, dict):
        return
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, tensor_type):
            out[name] = (obj, key)
        else:
            _tensor_slots(value, name, out, tensor_type, depth + 1)


def _safetensors_resize_writer(path: str, resizes: list[ResizeTensor]):
    """A `write(fh)` that streams a copy of a safetensors file with some tensors resized (first dimension)."""
    import struct

    import msgspec
    import numpy as np

    from ttsdoctor.artifacts.row_stats import read_rows
    from ttsdoctor.artifacts.tensors import DTYPE_SIZES
    from ttsdoctor.artifacts.weights import read_safetensors_header
    from ttsdoctor.fix_policy import RESIZABLE_DTYPES

    source = read_safetensors_header(path)
    by_name = {r.tensor: r for r in resizes}
    for name in by_name:
        info = source.tensors.get(name)
        if info is None or len(info.shape) not in (1, 2) or info.dtype not in RESIZABLE_DTYPES:
            raise EditError(f"cannot resize {name!r} in {path}")
    order = sorted(source.tensors.values(), key=lambda t: t.data_start or 0)
    header: dict[str, Any] = {"__metadata__": source.metadata} if source.metadata else {}
    offset = 0
    layout = []
    for info in order:
        shape = list(info.shape)
        if info.name in by_name:
            shape[0] = by_name[info.name].rows
        numel = 1
        for d in shape:
            numel *= d
        size = numel * DTYPE_SIZES[info.dtype]
        header[info.name] = {"dtype": info.dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        layout.append((info, shape))
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)

    def write(fh: Any) -> None:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        with open(path, "rb") as src:
            for info, shape in layout:
                assert info.data_start is not None and info.data_end is not None
                row_bytes = (info.data_end - info.data_start) // max(info.shape[0], 1) if info.shape else 0
                keep = info.data_end - info.data_start
                if info.name in by_name:
                    keep = min(info.shape[0], shape[0]) * row_bytes
                src.seek(info.data_start)
                remaining = keep
                while remaining:
                    chunk = src.read(min(remaining, 1 << 24))
                    if not chunk:
                        raise EditError(f"{path} ended while copying {info.name}")
                    fh.write(chunk)
                    remaining -= len(chunk)
                edit = by_name.get(info.name)
                if edit is not None and shape[0] > info.shape[0]:
                    matrix = info if len(info.shape) == 2 else msgspec.structs.replace(info, shape=(info.shape[0], 1))
                    base = read_rows(matrix, list(range(max(1, min(edit.mean_of_rows, info.shape[0])))))
                    mean = np.asarray(base, dtype=np.float64).mean(axis=0).astype(np.float32)
                    row = _to_dtype_bytes(mean, info.dtype)
                    for _ in range(shape[0] - info.shape[0]):
                        fh.write(row)

    return write
