"""TRN: what training and data-preparation scripts do to the sequences an LLM-based TTS model learns from.

Truncation that cuts the end-of-speech token off long samples, sequence budgets shorter than the audio of an
ordinary sentence, and token ids hard-coded from one family's published tokenizer in a script that loads another.
The flow analysis is deliberately local: one function at a time, statements in order, a variable's value followed
through `=`, `+=`, `.append` and the concatenations scripts build sequences with.
"""

from __future__ import annotations

import ast
import bisect
import math
import os
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec

from ttsdoctor.artifacts.adapter import find_local_model
from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.tokenizer import TokenizerFile, load_tokenizer_json
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.checks import pysource
from ttsdoctor.checks.serving import config_family, loaded_model_defaults, loaded_models, source_family
from ttsdoctor.codecs import ServingFacts, family_ending_with, published_ids
from ttsdoctor.families import detect_family
from ttsdoctor.finding import Applicability, Finding, Fix, Severity
from ttsdoctor.rule import Rule

# ----------------------------------------------------------------------------------------------------------------
# TRN001: a sequence sliced to a maximum length after its end-of-speech token was appended

_END_TOKEN_TEXT = re.compile(r"end|eos|stop", re.I)
_END_NAME_WITH = {"speech", "audio", "gen", "generation", "of", "sequence", "seq", "token", "id", "ai"}
_CONCAT = {"concatenate", "cat", "hstack", "concat"}
_WRAPS = {"array", "asarray", "tensor", "as_tensor", "LongTensor", "IntTensor", "list", "tolist", "long", "int", "to"}
_SEQ_TEXT = re.compile(r"\[\s*:")  # a file without a `[:` slice has nothing for TRN001
# A file about speech: text LLM pipelines (TRL's DPO truncating completions after eos) are not this rule's business
_SPEECH_WORDS = (
    "speech",
    "audio_code",
    "audiocode",
    "audio_token",
    "audiotoken",
    "codec",
    "snac",
    "custom_token",
    "<|s_",
)


def _end_name(name: str) -> bool:
    """speech_gen_end_id, end_of_speech, eos_token_id, audio_end, stop_speech_token: names of end ids."""
    parts = set(name.lower().split("_"))
    return (
        "eos" in parts
        or ("end" in parts and bool(parts & _END_NAME_WITH))
        or ("stop" in parts and bool(parts & {"speech", "token", "audio"}))
    )


def _key(expr: ast.expr) -> str | None:
    """A variable the flow follows: a name, or an attribute of self."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
        return "self." + expr.attr
    return None


def _own_expressions(stmt: ast.stmt) -> list[ast.AST]:
    """The expressions a statement evaluates itself (not those of the statements in its body)."""
    if isinstance(stmt, (ast.If, ast.While)):
        return [stmt.test]
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.iter]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [item.context_expr for item in stmt.items]
    if isinstance(stmt, (ast.Try, ast.TryStar, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return []
    return [stmt]


def _is_len_guard(test: ast.expr, sequence: ast.expr) -> bool:
    """`len(seq) > limit` or `len(seq) >= limit`: the branch runs only for sequences longer than the limit."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Gt, ast.GtE))):
        return False
    left = test.left
    return (
        isinstance(left, ast.Call)
        and isinstance(left.func, ast.Name)
        and left.func.id == "len"
        and len(left.args) == 1
        and ast.dump(left.args[0]) == ast.dump(sequence)
    )


def _skips_long(stmt: ast.stmt) -> bool:
    """`if len(...) ...: continue` (or return / raise / break): long samples are dropped before any slice."""
    if not isinstance(stmt, ast.If):
        return False
    if not any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len" for n in ast.walk(stmt.test)
    ):
        return False
    return any(isinstance(s, (ast.Continue, ast.Return, ast.Raise, ast.Break)) for s in stmt.body)


class Truncation(msgspec.Struct, frozen=True):
    node: ast.Subscript
    limit: ast.expr
    end: str  # how the end token is written: "speech_gen_end_id", "'<|SPEECH_GENERATION_END|>'"
    end_line: int
    only_when_longer: bool  # inside `if len(seq) > limit:`
    scope: ast.AST


class _Flow(msgspec.Struct):
    """Which variables hold an end id, and which hold a sequence whose last element is one, statement by statement."""

    source: SourceFile
    end_ids: set[int]
    scope: ast.AST
    slice_lines: _SliceLines
    holds_end: dict[str, str] = {}
    ends_with: dict[str, tuple[str, int]] = {}
    items_end_with: dict[str, tuple[str, int]] = {}  # a list of such sequences
    skip_guard: bool = False
    found: list[Truncation] = []

    def is_end(self, expr: ast.expr) -> str | None:
        key = _key(expr)
        if key is not None:
            name = key.rsplit(".", 1)[-1]
            found = self.holds_end.get(key) or (key if _end_name(name) else None)
            if found is None and key.startswith("self."):  # self.end = convert_tokens_to_ids(...) in __init__
                value = pysource.self_attribute(self.source, self.scope, name)
                found = self.is_end(value) if isinstance(value, (ast.Call, ast.Constant)) else None
            return found
        if isinstance(expr, ast.Attribute) and _end_name(expr.attr):
            return ast.unparse(expr)
        if isinstance(expr, ast.Call) and pysource.called_name(expr) in ("convert_tokens_to_ids", "token_to_id"):
            arg = expr.args[0] if expr.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _END_TOKEN_TEXT.search(arg.value):
                return repr(arg.value)
        if isinstance(expr, ast.Constant) and isinstance(expr.value, int) and expr.value in self.end_ids:
            return str(expr.value)
        return None

    def ends(self, expr: ast.expr) -> tuple[str, int] | None:
        key = _key(expr)
        if key is not None:
            return self.ends_with.get(key)
        if isinstance(expr, (ast.List, ast.Tuple)) and expr.elts:
            last = expr.elts[-1]
            if isinstance(last, ast.Starred):
                return self.ends(last.value)
            end = self.is_end(last)
            return (end, last.lineno) if end is not None else None
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return self.ends(expr.right)
        if isinstance(expr, ast.Call):
            name = pysource.called_name(expr)
            first = expr.args[0] if expr.args else None
            if name in _CONCAT and isinstance(first, (ast.List, ast.Tuple)) and first.elts:
                return self.ends(first.elts[-1])
            if name in _WRAPS:
                if first is not None and name not in ("tolist", "long", "to"):
                    return self.ends(first)
                if isinstance(expr.func, ast.Attribute):
                    return self.ends(expr.func.value)
        return None

    def walk(
        self, body: list[ast.stmt], guards: tuple[ast.expr, ...] = (), counters: frozenset[str] = frozenset()
    ) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for expr in _own_expressions(stmt):
                if self.slice_lines.overlaps(expr):
                    self._slices(expr, guards, counters)
            self._effects(stmt)
            if _skips_long(stmt):
                self.skip_guard = True
            inner = (*guards, stmt.test) if isinstance(stmt, ast.If) else guards
            looping = counters
            if isinstance(stmt, (ast.For, ast.AsyncFor)) and _counts(stmt.iter):
                looping = counters | {n.id for n in ast.walk(stmt.target) if isinstance(n, ast.Name)}
            for name in ("body", "orelse", "finalbody"):
                child = getattr(stmt, name, None)
                if isinstance(child, list) and child and isinstance(child[0], ast.stmt):
                    self.walk(child, inner if name == "body" else guards, looping if name == "body" else counters)
            for handler in getattr(stmt, "handlers", ()):
                self.walk(handler.body, guards, counters)

    def _slices(self, expr: ast.AST, guards: tuple[ast.expr, ...], counters: frozenset[str]) -> None:
        """`counters`: the names enclosing `for ... in range(...)` loops count with (those of a comprehension in `expr`
        are looked up only for a slice bounded by a name)."""
        for node in ast.walk(expr):
            if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice)):
                continue
            cut = node.slice
            if cut.upper is None or cut.step is not None or not _is_zero_or_none(cut.lower):
                continue
            if isinstance(cut.upper, ast.Name) and (cut.upper.id in counters or cut.upper.id in _range_counters(expr)):
                continue  # words[:i] for i in range(...): every prefix in turn (an n-gram score), not a budget
            if isinstance(cut.upper, ast.Constant) and isinstance(cut.upper.value, int) and cut.upper.value < 8:
                continue  # words[:1]: the first items, not a length budget
            if isinstance(cut.upper, ast.UnaryOp) or (
                isinstance(cut.upper, ast.Constant) and not isinstance(cut.upper.value, int)
            ):
                continue  # seq[:-1]: dropping the last token on purpose (the shifted input)
            if any(isinstance(n, ast.Call) and pysource.called_name(n) == "len" for n in ast.walk(cut.upper)):
                continue  # seq[:len(other)], seq[:len(seq) - 1]
            ends = self.ends(node.value)
            if ends is None:
                continue
            longer = any(_is_len_guard(test, node.value) for test in guards)
            if self.skip_guard and not longer:
                continue
            self.found.append(Truncation(node, cut.upper, ends[0], ends[1], longer, self.scope))

    def _effects(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            key = _key(stmt.targets[0])
            if key is None:
                return
            end = self.is_end(stmt.value) if not isinstance(stmt.value, (ast.Name, ast.List, ast.Tuple)) else None
            if end is not None:
                self.holds_end[key] = end
            else:
                self.holds_end.pop(key, None)
            self._set(key, self.ends(stmt.value))
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Add):
            key = _key(stmt.target)
            if key is not None:
                self._set(key, self.ends(stmt.value))
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            if not isinstance(call.func, ast.Attribute) or len(call.args) != 1:
                return
            key = _key(call.func.value)
            if key is None:
                return
            if call.func.attr == "append":
                end = self.is_end(call.args[0])
                self._set(key, (end, call.lineno) if end is not None else None)
                item = self.ends(call.args[0])
                if item is not None:
                    self.items_end_with[key] = item
            elif call.func.attr == "extend":
                self._set(key, self.ends(call.args[0]))
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            for node in ast.walk(stmt.target):
                if isinstance(node, ast.Name):
                    self._set(node.id, None)
            for target, items in self._loop_pairs(stmt.target, stmt.iter):
                found = self.items_end_with.get(items)
                if found is not None:
                    self._set(target, found)

    @staticmethod
    def _loop_pairs(target: ast.expr, iterable: ast.expr) -> list[tuple[str, str]]:
        """(loop variable, list it runs over): `for x in xs`, `for a, b in zip(xs, ys)`, `for i, x in enumerate(xs)`."""
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name) and isinstance(target, ast.Tuple):
            if iterable.func.id == "zip":
                pairs = zip(target.elts, iterable.args)
            elif iterable.func.id == "enumerate" and len(target.elts) == 2 and iterable.args:
                pairs = zip(target.elts[1:], iterable.args[:1])
            else:
                return []
            return [(t.id, k) for t, a in pairs if isinstance(t, ast.Name) and (k := _key(a)) is not None]
        key = _key(iterable)
        return [(target.id, key)] if isinstance(target, ast.Name) and key is not None else []

    def _set(self, key: str, value: tuple[str, int] | None) -> None:
        if value is None:
            self.ends_with.pop(key, None)
        else:
            self.ends_with[key] = value


_SLICE_FROM_START = re.compile(r"\[\s*(?:0|None)?\s*:")  # where _slices can find a cut: seq[:n], seq[0:n]


class _SliceLines(msgspec.Struct, frozen=True):
    """The lines holding a slice from the start: statements on other lines need no walk of their expressions."""

    starts: tuple[int, ...]  # sorted line numbers of the `[` of each such slice

    @classmethod
    def of(cls, text: str) -> _SliceLines:
        starts, line, pos = [], 1, 0
        for match in _SLICE_FROM_START.finditer(text):
            line += text.count("\n", pos, match.start())
            pos = match.start()
            starts.append(line)
        return cls(tuple(starts))

    def overlaps(self, node: ast.AST) -> bool:
        first = getattr(node, "lineno", None)
        if first is None:
            return True
        last = getattr(node, "end_lineno", None) or first
        i = bisect.bisect_left(self.starts, first)
        return i < len(self.starts) and self.starts[i] <= last


def _scopes(source: SourceFile) -> Iterator[ast.AST]:
    """The module and every function in it."""
    yield source.tree
    for stmt in pysource.statements(source):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield stmt


def truncations(source: SourceFile, end_ids: set[int]) -> list[Truncation]:
    found: list[Truncation] = []
    lines = _SliceLines.of(source.text)
    if not lines.starts:
        return found
    for scope in _scopes(source):
        if scope is not source.tree and not lines.overlaps(scope):
            continue  # no slice from the start in this function: nothing to find in it
        flow = _Flow(source, end_ids, scope, lines)
        flow.walk(scope.body)  # type: ignore[attr-defined]
        found += flow.found
    return found


def _counts(iterable: ast.expr) -> bool:
    """`range(...)`: a loop over positions."""
    return isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name) and iterable.func.id == "range"


def _range_counters(expr: ast.AST) -> frozenset[str]:
    """The names a comprehension in `expr` counts with: `i` in `(words[:i] for i in range(1, n))`."""
    return frozenset(
        n.id
        for c in ast.walk(expr)
        if isinstance(c, ast.comprehension) and _counts(c.iter)
        for n in ast.walk(c.target)
        if isinstance(n, ast.Name)
    )


def _is_zero_or_none(expr: ast.expr | None) -> bool:
    return expr is None or (isinstance(expr, ast.Constant) and expr.value == 0)


def _end_of_speech_ids(facts: ServingFacts | None) -> set[int]:
    """The family's end-of-speech id in its published tokenizer (Orpheus 128258), when the file's family is known."""
    table = published_ids(facts.family) if facts is not None else None
    speech_end = table.end_of_speech(facts.end_of_speech) if table is not None and facts is not None else None
    return {speech_end} if speech_end is not None else set()


def _seconds(tokens: int, facts: ServingFacts | None) -> str:
    seconds = facts.seconds(tokens) if facts is not None else None
    if facts is None or seconds is None:
        return ""
    return f" ({seconds:.1f} s of {facts.family} audio at {facts.tokens_per_second:g} tokens/s)"


class TruncatedEndOfSpeech(Rule):
    id = "TRN001"
    name = "truncation-cuts-end-of-speech"
    summary = "A training sequence is cut to a maximum length after its end-of-speech token was appended"
    severity = Severity.WARNING

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not _SEQ_TEXT.search(source.text):
            return
        facts = source_family(source)
        if facts is None and not source.mentions_any_case(*_SPEECH_WORDS):
            return
        for cut in truncations(source, _end_of_speech_ids(facts)):
            yield self._finding(source, cut, facts)

    def _finding(self, source: SourceFile, cut: Truncation, facts: ServingFacts | None) -> Finding:
        if facts is None and cut.end[:1] in "'\"":
            facts = family_ending_with(cut.end[1:-1])
        limit_text = ast.unparse(cut.limit)
        limit = pysource.int_value(source, cut.limit, cut.scope, cut.node.lineno)
        size = f"{limit_text} = {limit}" if limit is not None and limit_text != str(limit) else limit_text
        audio = _seconds(limit, facts) if limit is not None else ""
        when = (
            f"runs only for sequences longer than {size} tokens{audio}, so each of them"
            if cut.only_when_longer
            else f"cuts every sequence longer than {size} tokens{audio}, and each of them"
        )
        return self.finding(
            f"`{ast.unparse(cut.node)}` at {source.line_name(cut.node.lineno)} {when} loses the end-of-speech "
            f"token ({cut.end}, appended at {source.line_name(cut.end_line)}): those samples teach the model to "
            "keep talking, and it learns not to stop",
            source.path,
            line=cut.node.lineno,
            column=cut.node.col_offset + 1,
            evidence={"limit": limit, "end_token": cut.end, "only_when_longer": cut.only_when_longer},
            fix=Fix(
                "Skip (or split) samples longer than the limit, or truncate the text and audio codes before "
                "appending the end-of-speech token",
                Applicability.DISPLAY_ONLY,
            ),
        )


# ----------------------------------------------------------------------------------------------------------------
# TRN002: a sequence budget shorter than the audio of an ordinary sentence

_BUDGET_KEYS = ("max_seq_length", "max_seq_len")
# Sections of a config that hold inference settings (freds0's Spark-TTS config has `synthesis: max_seq_length: 128`
# beside `model: max_seq_length: 2048`)
_INFERENCE_SECTIONS = frozenset(
    {"synthesis", "inference", "infer", "generation", "generate", "serving", "server", "demo"}
)
_BUDGET_TEXT = re.compile(r"max_seq_len")


class SequenceBudget(Rule):
    id = "TRN002"
    name = "sequence-budget"
    summary = "A training max_seq_length shorter than the audio tokens of an ordinary sentence of the family"
    severity = Severity.WARNING
    options: ClassVar[dict[str, tuple[type, Any]]] = {"min-seconds": (float, 10.0)}

    def _message(self, what: str, budget: int, facts: ServingFacts) -> str | None:
        rate = facts.tokens_per_second or 0.0
        seconds = facts.seconds(budget)
        if seconds is None or seconds >= self.min_seconds:
            return None
        return (
            f"{what} holds at most {seconds:.1f} s of {facts.family} audio at {rate:g} tokens per second, before "
            "any text: longer samples are cut (or dropped) and the model never sees "
            f"the end of an utterance longer than that; {math.ceil(self.min_seconds * rate)} tokens hold "
            f"{self.min_seconds:g} s"
        )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not _BUDGET_TEXT.search(source.text):
            return
        facts = source_family(source)
        if facts is None or not facts.tokens_per_second:
            return
        short: dict[int, list[ast.keyword]] = {}  # one finding per budget, at its first use
        for site in sorted(pysource.calls(source, _BUDGET_TEXT), key=lambda s: s.node.lineno):
            for key in _BUDGET_KEYS:
                kw = pysource.keyword(site.node, key)
                budget = pysource.int_value(source, kw.value, site.scope, site.node.lineno) if kw is not None else None
                if kw is not None and budget is not None and budget > 0:
                    short.setdefault(budget, []).append(kw)
        for budget, uses in short.items():
            kw = uses[0]
            also = (
                f" (also passed at {', '.join(source.line_name(u.value.lineno) for u in uses[1:])})" if uses[1:] else ""
            )
            message = self._message(f"{kw.arg}={budget} at {source.line_name(kw.value.lineno)}{also}", budget, facts)
            if message is not None:
                yield self.finding(
                    message,
                    source.path,
                    line=kw.value.lineno,
                    column=kw.value.col_offset + 1,
                    evidence={"budget_tokens": budget, "tokens_per_second": facts.tokens_per_second},
                )

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        facts = config_family(target)
        if facts is None or not facts.tokens_per_second:
            return
        for entry in target.find(*_BUDGET_KEYS):
            value = entry.value
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                continue
            message = self._message(f"{entry.key}: {value} in {target.path}", value, facts)
            if message is None:
                continue
            section = next((p for p in entry.pointer.split("/")[1:-1] if p.lower() in _INFERENCE_SECTIONS), None)
            if section is not None:  # the loader's limit at inference, not what training sees
                seconds = facts.seconds(value) or 0.0
                message = (
                    f"{entry.key}: {value} under {section} in {target.path}: an inference setting, not the training "
                    f"budget; {value} tokens are {seconds:.1f} s of {facts.family} audio, should the loader cap the "
                    "sequence at it"
                )
            yield self.finding(
                message,
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                {
                    "budget_tokens": value,
                    "tokens_per_second": facts.tokens_per_second,
                    "rate_source": facts.rate_source,
                },
                severity=Severity.INFO if section is not None else None,
            )


# ----------------------------------------------------------------------------------------------------------------
# TRN003: ids hard-coded from a family's published tokenizer in a script that loads a different one

_BIG_INT_TEXT = re.compile(r"\b1[0-9]{5}\b")
_BIG_INT_DIGITS = re.compile(r"1[0-9]{5}")  # 50x faster than the \b form: run first, the exact form on its hits
_STOP_KEYWORDS = ("eos_token_id", "stop_token_ids", "pad_token_id")


class HardCodedId(msgspec.Struct, frozen=True):
    value: int
    node: ast.expr
    token: str  # what the id is in the family's published tokenizer


def _fold(expr: ast.expr, names: dict[str, ast.expr], depth: int = 0) -> int | None:
    """The int an expression of literals, + and - and module-level constant names evaluates to."""
    if depth > 8:
        return None
    if isinstance(expr, ast.Constant):
        return expr.value if isinstance(expr.value, int) and not isinstance(expr.value, bool) else None
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub, ast.Mult)):
        left, right = _fold(expr.left, names, depth + 1), _fold(expr.right, names, depth + 1)
        if left is None or right is None:
            return None
        if isinstance(expr.op, ast.Add):
            return left + right
        return left - right if isinstance(expr.op, ast.Sub) else left * right
    if isinstance(expr, ast.Name):
        value = names.get(expr.id)
        return _fold(value, names, depth + 1) if value is not None else None
    return None


def hard_coded_ids(source: SourceFile, table: dict[int, str]) -> list[HardCodedId]:
    """Every outermost constant expression of the file (`128266`, `128256 + 8`, `tokeniser_length + 2`) whose value
    is one of the published ids. Names count where used, not where assigned (`x = 128256` alone is not a use)."""
    names = pysource.last_assignments(source.tree)  # module-level constants, looked up by every name below
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(source.tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    found: list[HardCodedId] = []
    for node in ast.walk(source.tree):
        if not isinstance(node, (ast.Constant, ast.BinOp, ast.Name)) or isinstance(
            getattr(node, "ctx", None), ast.Store
        ):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.BinOp) and _fold(parent, names) is not None:
            continue  # part of a larger constant expression
        value = _fold(node, names)
        if value is None or value not in table:
            continue
        if (
            isinstance(parent, ast.Assign)
            and isinstance(node, (ast.Constant, ast.BinOp))
            and all(isinstance(t, ast.Name) for t in parent.targets)
        ):
            continue  # `end_of_speech = tokeniser_length + 2`: judged where the name is used
        found.append(HardCodedId(value, node, table[value]))
    return found


def _loaded_tokenizer(source: SourceFile) -> tuple[TokenizerFile | None, bool]:
    """The one tokenizer.json on this machine of the models the file loads by a literal name (a folder next to the
    script, under the current directory, or in the HF cache), else by an option's default (`default="./orpheus-ft"`:
    then True, the user may pass another); None when there is none or more than one."""
    here = os.path.dirname(source.path) or "."
    for names, from_default in ((loaded_models(source), False), (loaded_model_defaults(source), True)):
        folders = {
            folder
            for name in names
            if (folder := find_local_model(here, name, None, marker="tokenizer.json")) is not None
        }
        if folders:
            return (_tokenizer_in(folders.pop()) if len(folders) == 1 else None), from_default
    return None, False


def _tokenizer_in(folder: str) -> TokenizerFile | None:
    try:
        return load_tokenizer_json(os.path.join(folder, "tokenizer.json"))
    except ArtifactError:
        return None  # the folder's own check reports it


def _adds_tokens(source: SourceFile) -> bool:
    return bool(re.search(r"\.add_(special_)?tokens\s*\(", source.text))


class HardCodedTokenIds(Rule):
    id = "TRN003"
    name = "hard-coded-token-ids"
    summary = "Token ids hard-coded from a family's published tokenizer disagree with the tokenizer the script loads"
    severity = Severity.ERROR

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        text = source.text
        if "from_pretrained" not in text or not _BIG_INT_DIGITS.search(text) or not _BIG_INT_TEXT.search(text):
            return
        tokenizer, from_default = _loaded_tokenizer(source)
        if tokenizer is None:
            return
        facts = source_family(source)
        family = facts.family if facts is not None else None
        if family is None:
            detected, _ = detect_family(None, (), tokenizer, ())
            family = detected.name if detected is not None else None
        table = published_ids(family)
        if table is None:
            return
        adds = _adds_tokens(source)
        moved: list[str] = []
        missing: list[str] = []
        first: HardCodedId | None = None
        seen: set[int] = set()
        reported: list[int] = []
        for hit in sorted(hard_coded_ids(source, table.ids), key=lambda h: (h.node.lineno, h.node.col_offset)):
            actual = tokenizer.token_id(hit.token)
            if actual == hit.value or hit.value in seen:
                continue
            seen.add(hit.value)
            there = tokenizer.token(hit.value)
            is_there = f"{hit.value} is {there!r} there" if there is not None else f"{hit.value} is past its last id"
            where = source.line_name(hit.node.lineno)
            if actual is not None:
                moved.append(f"{hit.value} ({where}) is {hit.token!r}, which is {actual} in it ({is_there})")
            elif not adds:
                missing.append(f"{hit.value} ({where}) is {hit.token!r}, which it does not have ({is_there})")
            else:
                continue  # the script adds tokens itself: a missing one may be added at run time
            first = first or hit
            reported.append(hit.value)
        if first is None:
            return
        listed = moved + missing
        shown = "; ".join(listed[:4]) + (f"; and {len(listed) - 4} more" if len(listed) > 4 else "")
        yield self.finding(
            f"{len(listed)} token id(s) hard-coded from the published {table.family} tokenizer disagree with the "
            f"tokenizer this file loads{' by default' if from_default else ''}, {tokenizer.path}: {shown}. Audio "
            "codes get the wrong offset and stop ids never match"
            + (" (the model is an option's default: another may be given when it runs)" if from_default else ""),
            source.path,
            line=first.node.lineno,
            column=first.node.col_offset + 1,
            evidence={
                "tokenizer": tokenizer.path,
                "ids": sorted(reported),
                "moved": len(moved),
                "missing": len(missing),
                "published": table.source,
            },
            fix=Fix(
                "Look the ids up in the tokenizer the script loads: tokenizer.convert_tokens_to_ids('<token>')",
                Applicability.DISPLAY_ONLY,
            ),
            severity=Severity.ERROR if moved and not from_default else Severity.WARNING,
        )
