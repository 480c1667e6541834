"""A static pass over pickle opcodes: every global a pickle names, found without building anything.

This is the second line behind the inert unpickler in `pickles.py`: reconstruction can stop part way (an
object it cannot rebuild, a damaged stream), the opcode walk cannot be stopped by what the pickle builds, so
a payload placed after such a point is still seen. Names are read as the unpickler would read them: GLOBAL
and INST carry them inline; STACK_GLOBAL takes the two strings on top of the stack (pushed directly or
fetched from the memo); anything else under a STACK_GLOBAL (a computed name) or an extension-registry code
(EXT1/2/4) is reported as a global whose name cannot be known.
"""

from __future__ import annotations

import io

import msgspec

from ttsdoctor.limits import limit, over

UNKNOWN = "?"  # module or name that only running the pickle would reveal

_STRING_OPS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)


class Scan(msgspec.Struct):
    """What one pickle (from `start` to its STOP) names."""

    start: int
    end: int | None = None  # offset after STOP; None when the stream ended first or a limit was hit
    globals: list[tuple[str, str]] = []
    problem: str | None = None  # why the walk stopped before STOP


def python2_names(module: str, name: str) -> tuple[str, str]:
    """The name the unpickler really imports (fix_imports maps Python 2 names: __builtin__.set is builtins.set,
    commands.getoutput is subprocess.getoutput). Applied whatever the protocol: over-reporting a crafted name is
    harmless, missing one is not."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def scan_pickle(data: bytes, start: int = 0, max_ops: int | None = None) -> Scan:
    import pickletools

    result = Scan(start)
    stream = io.BytesIO(data)
    stream.seek(start)
    memo: dict[int, object] = {}

    def found(module: str, name: str) -> None:
        result.globals.append(python2_names(module, name))

    mark = object()
    stack: list[object] = []  # a model of the unpickler's stack: strings kept, every other value None
    count = 0
    max_ops = max_ops if max_ops is not None else limit("pickle_ops")
    try:
        for op, arg, _pos in pickletools.genops(stream):
            count += 1
            if count > max_ops:
                result.problem = f"more opcodes, {over('pickle_ops')}: the rest was not vetted"
                return result
            opname = op.name
            if opname in ("PROTO", "FRAME"):
                continue
            if opname == "STOP":
                result.end = stream.tell()
                return result
            if opname == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
                continue
            if opname in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = stack[-1] if stack else None  # type: ignore[arg-type]
                continue
            if opname in ("GLOBAL", "INST"):
                module, _, name = str(arg).partition(" ")
                found(module, name)
            elif opname == "STACK_GLOBAL":
                module_v, name_v = (stack[-2], stack[-1]) if len(stack) >= 2 else (None, None)
                if isinstance(module_v, str) and isinstance(name_v, str):
                    found(module_v, name_v)
                else:
                    result.globals.append((UNKNOWN, UNKNOWN))
            elif opname in ("EXT1", "EXT2", "EXT4"):
                result.globals.append((UNKNOWN, f"extension code {arg}"))
            pushed: object = None
            if opname in _STRING_OPS:
                pushed = arg.decode("latin-1") if isinstance(arg, bytes) else arg
            elif opname in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg))  # type: ignore[arg-type]
            elif opname == "DUP":
                pushed = stack[-1] if stack else None
            before = op.stack_before
            if opname == "POP" and stack and stack[-1] is mark:
                stack.pop()
                continue
            if pickletools.markobject in before:
                while stack and stack.pop() is not mark:
                    pass
                to_pop = len(before) - 2  # the mark and the slice above it are gone
            else:
                to_pop = len(before)
            del stack[max(0, len(stack) - to_pop) :]
            for item in op.stack_after:
                stack.append(mark if item is pickletools.markobject else pushed)
    except Exception as exc:  # pickletools raises ValueError, UnicodeDecodeError, ... on damaged streams
        result.problem = f"{type(exc).__name__}: {exc}"[:200]
        return result
    result.problem = "the stream ended before the pickle's STOP opcode"
    return result
