"""What source rules ask of a Python AST: calls by name, keyword values, dict literals, loops.

Deliberately shallow: a name is followed to its last plain assignment in the same function (or module),
which is how these bugs are written in practice (`gen_cfg = {...}` a few lines above the call).
"""

from __future__ import annotations

import ast
import bisect
import re
from collections import deque
from collections.abc import Iterator

import msgspec

from ttsdoctor.artifacts.source import SourceFile

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module, ast.Lambda)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)


class CallSite(msgspec.Struct, frozen=True):
    node: ast.Call
    name: str  # the called attribute or function name: "generate", "from_pretrained"
    scope: ast.AST  # enclosing function or module
    in_loop: bool  # inside a for/while loop of its own function


class SourceIndex(msgspec.Struct):
    """Every node once, with its scope and loop context, and the calls by called name."""

    nodes: list[tuple[ast.AST, ast.AST, bool]]
    calls: dict[str, list[CallSite]]


def index(source: SourceFile, pattern: re.Pattern[str]) -> SourceIndex:
    """The nodes on lines where `pattern` matches, with their ancestors, scope and loop context.

    A text prefilter decides where to look; the traversal then descends only into nodes whose line
    range holds a matching line, so its cost follows the matches, not the file. Cached per pattern.
    """
    key = "index:" + pattern.pattern
    cached = source.cache.get(key)
    if cached is not None:
        return cached
    offsets = source.cache.get("line_offsets")
    if offsets is None:
        offsets = source.cache["line_offsets"] = source.line_offsets()
    lines = sorted({bisect.bisect_right(offsets, m.start()) for m in pattern.finditer(source.text)})
    entries: list[tuple[ast.AST, ast.AST, bool]] = []
    by_name: dict[str, list[CallSite]] = {}

    def relevant(node: ast.AST) -> bool:
        start = getattr(node, "lineno", None)
        if start is None:
            return True
        end = getattr(node, "end_lineno", None) or start
        i = bisect.bisect_left(lines, start)
        return i < len(lines) and lines[i] <= end

    stack: list[tuple[ast.AST, ast.AST, bool]] = [(source.tree, source.tree, False)] if lines else []
    while stack:
        node, scope, in_loop = stack.pop()
        for child in ast.iter_child_nodes(node):
            if not relevant(child):
                continue
            entries.append((child, scope, in_loop))
            if isinstance(child, ast.Call):
                name = called_name(child)
                if name is not None:
                    by_name.setdefault(name, []).append(CallSite(child, name, scope, in_loop))
            if isinstance(child, _SCOPES):
                stack.append((child, child, False))
            else:
                stack.append((child, scope, in_loop or isinstance(child, _LOOPS)))
    result = SourceIndex(entries, by_name)
    source.cache[key] = result
    return result


def nodes(source: SourceFile, pattern: re.Pattern[str]) -> list[tuple[ast.AST, ast.AST, bool]]:
    """The nodes on matching lines (and their ancestors) with enclosing scope and loop context."""
    return index(source, pattern).nodes


def called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def calls(source: SourceFile, pattern: re.Pattern[str], *names: str) -> Iterator[CallSite]:
    """Calls on matching lines, by called name (all names when none are given)."""
    by_name = index(source, pattern).calls
    for name in names or tuple(by_name):
        yield from by_name.get(name, ())


def keyword(call: ast.Call, name: str) -> ast.keyword | None:
    return next((kw for kw in call.keywords if kw.arg == name), None)


def has_star_kwargs(call: ast.Call) -> bool:
    return any(kw.arg is None for kw in call.keywords)


def assigned_value(scope: ast.AST, name: str, before_line: int) -> ast.expr | None:
    """The value of the last `name = value` in `scope` before `before_line` (not descending into functions)."""
    found: ast.expr | None = None
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, ast.Assign) and node.lineno < before_line:
            for target in node.targets:
                if (
                    isinstance(target, ast.Name)
                    and target.id == name
                    and (found is None or node.lineno >= getattr(found, "lineno", 0))
                ):
                    found = node.value
        stack.extend(ast.iter_child_nodes(node))
    return found


def own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function or module body, without the functions and classes defined in it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (*_SCOPES, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def resolve(expr: ast.expr, scope: ast.AST, line: int) -> ast.expr:
    """Follow a bare name to its last assignment; anything else is returned as is."""
    if isinstance(expr, ast.Name):
        value = assigned_value(scope, expr.id, line)
        if value is not None:
            return value
    return expr


def parameter_default(scope: ast.AST, name: str) -> ast.expr | None:
    """The default of parameter `name` of the function `scope` (`def f(stop_token_ids=[49158])`): the value a call
    that does not pass it runs with."""
    if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    args = scope.args
    positional = [*args.posonlyargs, *args.args]
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return next((default for arg, default in pairs if arg.arg == name), None)


def env_default(expr: ast.expr) -> str | None:
    """The string default of an environment lookup, `os.environ.get("MODEL_ID", "openai/gpt-oss-20b")` or
    `os.getenv("MODEL", "x")`: what runs when the variable is not set."""
    if not (isinstance(expr, ast.Call) and called_name(expr) in ("get", "getenv")):
        return None
    func = expr.func
    owner = func.value if isinstance(func, ast.Attribute) else None
    if called_name(expr) == "get" and not (
        (isinstance(owner, ast.Attribute) and owner.attr == "environ")
        or (isinstance(owner, ast.Name) and owner.id == "environ")
    ):
        return None  # a dict's get: not the environment
    if called_name(expr) == "getenv" and not (owner is None or (isinstance(owner, ast.Name) and owner.id == "os")):
        return None
    default = expr.args[1] if len(expr.args) > 1 else getattr(keyword(expr, "default"), "value", None)
    return default.value if isinstance(default, ast.Constant) and isinstance(default.value, str) else None


def int_value(source: SourceFile, expr: ast.expr, scope: ast.AST, line: int) -> int | None:
    """A literal int, directly or through a name assigned one in the function or the module, or an attribute of
    self assigned one in the class."""
    value: ast.expr | None = resolve(expr, scope, line)
    if value is expr and isinstance(expr, ast.Name):
        value = resolve(expr, source.tree, line)
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
        value = self_attribute(source, scope, expr.attr)  # self.max_length = 2048 in __init__
    if isinstance(value, ast.Constant) and isinstance(value.value, int) and not isinstance(value.value, bool):
        return value.value
    return None


_CARRIERS = (ast.stmt, ast.excepthandler, ast.match_case)  # what holds statements: no expression does


def statements(source: SourceFile) -> list[ast.stmt]:
    """Every statement of the file, nested ones included, in the order `ast.walk` meets them (breadth first,
    fields in order), found through statement bodies only: no expression holds a statement, so depths and order
    among statements are the same, and classes and functions are found without visiting expressions (most of
    a tree)."""
    cached: list[ast.stmt] | None = source.cache.get("statements")
    if cached is None:
        cached = source.cache["statements"] = []
        queue: deque[ast.AST] = deque([source.tree])
        while queue:
            node = queue.popleft()
            if isinstance(node, ast.stmt):
                cached.append(node)
            for name in node._fields:
                value = getattr(node, name, None)
                if isinstance(value, list):
                    queue.extend(item for item in value if isinstance(item, _CARRIERS))
    return cached


def method_classes(source: SourceFile) -> dict[int, ast.ClassDef]:
    """The class around each method (by the id of its FunctionDef node)."""
    cached: dict[int, ast.ClassDef] | None = source.cache.get("method_classes")
    if cached is None:
        cached = source.cache["method_classes"] = {
            id(node): cls
            for cls in statements(source)
            if isinstance(cls, ast.ClassDef)
            for node in cls.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
    return cached


def self_attribute(source: SourceFile, scope: ast.AST, attr: str) -> ast.expr | None:
    """The value of `self.attr = ...` anywhere in the class around a method (last one wins)."""
    cls = method_classes(source).get(id(scope))
    if cls is None:
        return None
    table: dict[int, dict[str, ast.expr]] = source.cache.setdefault("self_attributes", {})
    if id(cls) not in table:  # one walk of each class, whichever attribute is asked first
        found: dict[str, ast.expr] = {}
        for node in ast.walk(cls):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    found[target.attr] = node.value
        table[id(cls)] = found
    return table[id(cls)].get(attr)


def last_assignments(scope: ast.AST) -> dict[str, ast.expr]:
    """The value of the last `name = value` of each name in `scope` (not descending into functions): what
    assigned_value(scope, name, <after the end>) gives, for every name in one walk."""
    found: dict[str, ast.Assign] = {}
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    seen = found.get(target.id)
                    if seen is None or node.lineno >= seen.value.lineno:
                        found[target.id] = node
        stack.extend(ast.iter_child_nodes(node))
    return {name: node.value for name, node in found.items()}


def is_dict_expr(expr: ast.expr) -> bool:
    """A dict literal, a dict comprehension or a `dict(...)` call."""
    if isinstance(expr, (ast.Dict, ast.DictComp)):
        return True
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "dict"


def dict_items(expr: ast.expr) -> Iterator[tuple[str, ast.expr, ast.AST]]:
    """(key, value, key node) of a dict literal or a dict(...) call with string keys."""
    if isinstance(expr, ast.Dict):
        for key, value in zip(expr.keys, expr.values):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                yield key.value, value, key
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "dict":
        for kw in expr.keywords:
            if kw.arg is not None:
                yield kw.arg, kw.value, kw


def is_true(expr: ast.expr | None) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is True


def loop_note(site: CallSite) -> str:
    return " inside a loop (paid on every decoding step)" if site.in_loop else ""


def char_offset(source: SourceFile, line: int, col: int) -> int:
    """Character offset in source.text of an AST (line, col); AST columns count UTF-8 bytes."""
    offsets = source.cache.get("line_offsets")
    if offsets is None:
        offsets = source.cache["line_offsets"] = source.line_offsets()
    start = offsets[line - 1]
    end = offsets[line] if line < len(offsets) else len(source.text)
    return start + len(source.text[start:end].encode("utf-8")[:col].decode("utf-8", errors="ignore"))


def span(source: SourceFile, node: ast.AST) -> tuple[int, int] | None:
    """Character range [start, end) of a node in source.text."""
    line, col = getattr(node, "lineno", None), getattr(node, "col_offset", None)
    end_line, end_col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
    if line is None or col is None or end_line is None or end_col is None:
        return None
    return char_offset(source, line, col), char_offset(source, end_line, end_col)


def segment(source: SourceFile, node: ast.AST) -> str | None:
    """The source text of a node (ast.get_source_segment splits the whole file on every call)."""
    found = span(source, node)
    return source.text[found[0] : found[1]] if found else None


def mentions(text: str, literal: str | tuple[str, ...], pattern: re.Pattern[str]) -> bool:
    """A literal substring test (memchr fast; any of several literals) before the regex."""
    found = literal in text if isinstance(literal, str) else any(w in text for w in literal)
    return found and pattern.search(text) is not None
