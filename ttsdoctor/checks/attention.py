"""ATT: forced attention outputs and eager attention, in configs and in source."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from ttsdoctor.artifacts.jsonfile import JsonDoc
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.checks import pyflow, pysource
from ttsdoctor.environment import transformers_major
from ttsdoctor.finding import Applicability, Finding, Fix, RemoveJsonKey, ReplaceSource, SetJsonValue, Severity
from ttsdoctor.rule import Rule

# Text prefilters: the AST is only walked in files these match (most files of a large tree do not).
_FORCED_TEXT = re.compile(r"output_attentions\s*=\s*True|[\"']output_attentions[\"']\s*:\s*True")
_EAGER_TEXT = re.compile(r"[\"']eager[\"']")


def output_attentions_effect(in_config: bool) -> str:
    major = transformers_major()
    v4 = (
        "transformers 4.x falls back to the manual attention implementation on every call ('Falling back to the "
        "manual attention implementation'): the Chatterbox report measured 27% slower generation"
    )
    v5 = (
        "transformers 5.x with sdpa (the default) returns empty attentions "
        + ("silently" if in_config else "with at most a one-time warning")
        + ", and switching to eager to get them gives up the fused kernels"
    )
    if major is None:
        return f"{v4}; {v5}"
    return v4 if major < 5 else v5


def _drop_keyword_fix(source: SourceFile, kw: ast.keyword) -> Fix | None:
    """Remove `output_attentions=True` from a call: its whole line when it stands alone, else with its comma."""
    found = pysource.span(source, kw)
    if found is None:
        return None
    start, end = found
    text = source.text
    line_start = text.rfind("\n", 0, start) + 1
    after = re.compile(r",?[ \t]*(#[^\n]*)?\n").match(text, end)
    if not text[line_start:start].strip() and after:  # alone on its line
        start, end = line_start, after.end()
    else:
        following = re.compile(r"\s*,\s*").match(text, end)
        if following:
            end = following.end()
        else:
            preceding = re.search(r",\s*$", text[:start])
            if preceding is None:
                return None
            start = preceding.start()
    return Fix(
        "Remove output_attentions=True from the call",
        Applicability.UNSAFE,
        (ReplaceSource(source.path, start, end, ""),),
    )


class ForcedOutputAttentions(Rule):
    id = "ATT001"
    name = "forced-output-attentions"
    summary = "output_attentions=True forced in a config or in inference code"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        for doc in (target.config, target.generation_config):
            if doc is not None and doc.data.get("output_attentions") is True:
                line, column = doc.position("/output_attentions")
                name = doc.path.rsplit("/", 1)[-1]
                fix = Fix(
                    f"Remove output_attentions from {name}",
                    Applicability.SAFE,
                    (RemoveJsonKey(doc.path, "/output_attentions"),),
                )
                yield self.finding(
                    f"output_attentions=true in {name}: {output_attentions_effect(True)}",
                    doc.path,
                    "/output_attentions",
                    line,
                    column,
                    fix=fix,
                )

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        for entry in target.find("output_attentions"):
            if entry.value is True:
                yield self.finding(
                    f"output_attentions: true in a training config: {output_attentions_effect(False)}",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not pysource.mentions(source.text, "output_attentions", _FORCED_TEXT):
            return
        for site in pysource.calls(source, _FORCED_TEXT):
            if site.name == "dict":
                continue  # a dict of settings: reported where it is passed as **kwargs
            kw = pysource.keyword(site.node, "output_attentions")
            if kw is None or not pysource.is_true(kw.value):
                continue
            call = pysource.segment(source, site.node.func) or site.name
            yield self.finding(
                f"{call}(output_attentions=True){pysource.loop_note(site)}: {output_attentions_effect(False)}",
                source.path,
                line=kw.lineno,
                column=kw.col_offset + 1,
                evidence={"in_loop": site.in_loop},
                fix=_drop_keyword_fix(source, kw),
            )
        for node, scope, _in_loop in pysource.nodes(source, _FORCED_TEXT):
            yield from self._forced_by_dict(source, node, scope)
        for node, scope, in_loop in pysource.nodes(source, _FORCED_TEXT):
            if (
                isinstance(node, ast.Assign)
                and pysource.is_true(node.value)
                and any(isinstance(t, ast.Attribute) and t.attr == "output_attentions" for t in node.targets)
            ):
                what = f"`{pysource.segment(source, node)}`" + (" inside a loop" if in_loop else "")
                guard = _guard(scope, node)
                if guard is not None:  # Whisper: only with return_token_timestamps, which need the attentions
                    what += f", only when `{ast.unparse(guard)}`: a feature that asks for the attentions;"
                else:
                    what += ":"
                yield self.finding(
                    f"{what} {output_attentions_effect(True)}",
                    source.path,
                    line=node.lineno,
                    column=node.col_offset + 1,
                    severity=Severity.INFO if guard is not None else None,
                )

    def _forced_by_dict(self, source: SourceFile, node: ast.AST, scope: ast.AST) -> Iterator[Finding]:
        """`kw = {"output_attentions": True}` (or dict(output_attentions=True)) later passed as `**kw`."""
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return
        if not any(
            key == "output_attentions" and pysource.is_true(value) for key, value, _ in pysource.dict_items(node.value)
        ):
            return
        name = node.targets[0].id
        for call in pyflow.scope_nodes(scope):
            if not isinstance(call, ast.Call) or call.lineno <= node.lineno:
                continue
            for kw in call.keywords:
                if kw.arg is None and isinstance(kw.value, ast.Name) and kw.value.id == name:
                    callee = pysource.segment(source, call.func) or "the call"
                    where = source.line_name(node.lineno)
                    yield self.finding(
                        f"{callee}(**{name}) with {name}['output_attentions'] = True ({where}): "
                        f"{output_attentions_effect(False)}",
                        source.path,
                        line=call.lineno,
                        column=call.col_offset + 1,
                        evidence={"dict": source.line_name(node.lineno)},
                    )


def _guard(scope: ast.AST, node: ast.AST) -> ast.expr | None:
    """The feature flag of the innermost `if` of `scope` that holds `node`: a bare name or attribute
    (`if return_token_timestamps:`, `if args.plot:`), the user's choice. None for anything else: a capability check
    (`if hasattr(tfmr.config, "output_attentions"):`, Chatterbox's alignment analyzer) still runs every time."""
    found: ast.If | None = None
    for candidate in pyflow.scope_nodes(scope):
        if (
            isinstance(candidate, ast.If)
            and candidate.lineno < getattr(node, "lineno", 0) <= (candidate.end_lineno or 0)
            and (found is None or candidate.lineno > found.lineno)
        ):
            found = candidate
    if found is None:
        return None
    test = (
        found.test.operand if isinstance(found.test, ast.UnaryOp) and isinstance(found.test.op, ast.Not) else found.test
    )
    return found.test if isinstance(test, (ast.Name, ast.Attribute)) else None


ATTN_KEYS = ("attn_implementation", "_attn_implementation")


def _selects_implementation(node: ast.Assign, scope: ast.AST) -> bool:
    """Whether the same function also sets the attribute to something other than "eager"."""
    names = {t.attr for t in node.targets if isinstance(t, ast.Attribute)} & set(ATTN_KEYS)
    for other in pyflow.scope_nodes(scope):
        if other is node or not isinstance(other, ast.Assign):
            continue
        if any(isinstance(t, ast.Attribute) and t.attr in names for t in other.targets) and not (
            isinstance(other.value, ast.Constant) and other.value.value == "eager"
        ):
            return True
    return False


EAGER_EFFECT = (
    "eager attention materialises the full attention matrix: slower and more memory than sdpa, which "
    "gives the same greedy tokens"
)


class EagerAttentionPinned(Rule):
    id = "ATT002"
    name = "eager-attention-pinned"
    summary = "attn_implementation pinned to eager"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        doc: JsonDoc | None = target.config
        if doc is None:
            return
        for key in ATTN_KEYS:
            if doc.data.get(key) == "eager":
                line, column = doc.position(f"/{key}")
                fix = Fix(f"Set {key} to sdpa", Applicability.SAFE, (SetJsonValue(doc.path, f"/{key}", "sdpa"),))
                yield self.finding(
                    f'{key} is pinned to "eager" in config.json: {EAGER_EFFECT}',
                    doc.path,
                    f"/{key}",
                    line,
                    column,
                    fix=fix,
                )

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        for entry in target.find(*ATTN_KEYS):
            if entry.value == "eager":
                yield self.finding(
                    f"{entry.key}: eager in a training config: {EAGER_EFFECT}",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not pysource.mentions(source.text, "eager", _EAGER_TEXT):
            return
        remote = {  # keywords of calls that load remote code: its model classes may implement eager only
            id(kw)
            for site in pysource.calls(source, _EAGER_TEXT)
            if pysource.is_true(getattr(pysource.keyword(site.node, "trust_remote_code"), "value", None))
            for kw in site.node.keywords
        }
        for node, scope, _loop in pysource.nodes(source, _EAGER_TEXT):
            if isinstance(node, ast.Assign) and _selects_implementation(node, scope):
                continue  # library code choosing among implementations (eager as one branch), not a pin
            value: ast.expr | None = None
            if (isinstance(node, ast.keyword) and node.arg in ATTN_KEYS) or (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Attribute) and t.attr in ATTN_KEYS for t in node.targets)
            ):
                value = node.value
            if not (isinstance(value, ast.Constant) and value.value == "eager"):
                continue
            fix = None
            segment = pysource.segment(source, value)
            where = pysource.span(source, value)
            if segment in ('"eager"', "'eager'") and where is not None:
                fix = Fix(
                    "Use sdpa attention",
                    Applicability.SAFE,
                    (ReplaceSource(source.path, where[0], where[1], segment[0] + "sdpa" + segment[0]),),
                )
            if id(node) in remote:
                yield self.finding(
                    'attention pinned to "eager" while loading remote code (trust_remote_code=True): custom model '
                    "code often implements eager only; where it supports sdpa, sdpa is faster",
                    source.path,
                    line=value.lineno,
                    column=value.col_offset + 1,
                    severity=Severity.INFO,
                )
                continue
            yield self.finding(
                f'attention pinned to "eager": {EAGER_EFFECT}',
                source.path,
                line=value.lineno,
                column=value.col_offset + 1,
                fix=fix,
            )
