"""ATT: forced attention outputs and eager attention, in configs and in source."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator

from ttsdoctor.artifacts.jsonfile import JsonDoc
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.checks import pyflow, pysource, serving
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
            receiver = ast.unparse(site.node.func.value) if isinstance(site.node.func, ast.Attribute) else ""
            eager_line = _eager_models(source).get(receiver)
            if eager_line is not None and site.node.lineno in _returned_attentions(source).get(receiver, ()):
                yield self.finding(
                    f"{call}(output_attentions=True, return_dict_in_generate=True) returns attention weights from a "
                    f"model loaded with eager attention ({source.line_name(eager_line)}), the implementation that "
                    "computes them: asked for on purpose; every forward of that model pays for the full attention "
                    "matrix",
                    source.path,
                    line=kw.lineno,
                    column=kw.col_offset + 1,
                    evidence={"in_loop": site.in_loop, "eager": source.line_name(eager_line)},
                    severity=Severity.INFO,
                )
                continue
            if pysource.is_true(getattr(pysource.keyword(site.node, "trust_remote_code"), "value", None)):
                yield self.finding(
                    f"{call}(output_attentions=True) with trust_remote_code=True: the custom model code decides the "
                    "attention implementation; where it runs sdpa, transformers 5 returns empty attentions, where it "
                    "implements eager only, every forward also returns each layer's attention matrices: drop it unless "
                    "they are read",
                    source.path,
                    line=kw.lineno,
                    column=kw.col_offset + 1,
                    evidence={"in_loop": site.in_loop, "remote_code": True},
                    severity=Severity.INFO,
                )
                continue
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
            if isinstance(node, ast.Assign) and pysource.is_true(_attribute_value(node, ("output_attentions",))):
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


def _attribute_value(node: ast.AST, names: tuple[str, ...]) -> ast.expr | None:
    """The value of an assignment to an attribute of one of `names` (`model.config.output_attentions = True`)."""
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr in names for t in node.targets):
        return node.value
    return None


def _sets_implementation(node: ast.AST) -> ast.expr | None:
    """The value a node gives the attention implementation: `attn_implementation=` in a call, or an assignment to
    `.attn_implementation` / `._attn_implementation`."""
    if isinstance(node, ast.keyword) and node.arg in ATTN_KEYS:
        return node.value
    return _attribute_value(node, ATTN_KEYS)


def _selects_implementation(node: ast.AST, scope: ast.AST) -> bool:
    """Whether the same function also sets the attention implementation to something other than "eager" (library
    code choosing among implementations, eager being one branch)."""
    for other in pyflow.scope_nodes(scope):
        value = _sets_implementation(other) if other is not node else None
        if value is not None and not (isinstance(value, ast.Constant) and value.value == "eager"):
            return True
    return False


# An `if` around the pin that tests the GPU or a kernel it lacks: eager as a hardware fallback (xformers asked for on
# a T4), not a pin. A test of the implementation alone is not one: Chatterbox switches a working sdpa to eager with
# `if config._attn_implementation == "sdpa"`, which is the slowdown itself.
_FALLBACK_TEST = re.compile(r"xformers|capability|device_name|\b(?:Tesla )?(?:T4|V100|P100|K80)\b", re.I)


def _under_fallback_test(node: ast.AST, scope: ast.AST, source: SourceFile) -> bool:
    line = getattr(node, "lineno", 0)
    for other in pyflow.scope_nodes(scope):
        if not isinstance(other, ast.If) or not other.body:
            continue
        inside = other.body[0].lineno <= line <= (other.end_lineno or 0)
        if inside and _FALLBACK_TEST.search(pysource.segment(source, other.test) or ""):
            return True
    return False


def _attentions_asked_at(scope: ast.AST) -> int | None:
    """The line where the same function asks for attention weights (`output_attentions=True` in a call, or assigned
    to an attribute): eager there is how it gets them."""
    for node in pyflow.scope_nodes(scope):
        if isinstance(node, ast.keyword) and node.arg == "output_attentions" and pysource.is_true(node.value):
            return node.value.lineno
        if isinstance(node, ast.Assign) and pysource.is_true(_attribute_value(node, ("output_attentions",))):
            return node.lineno
    return None


def _returned_attentions(source: SourceFile) -> dict[str, list[int]]:
    """Models whose generate() returns attention weights to its caller: `X.generate(..., output_attentions=True,
    return_dict_in_generate=True)`, by the text of X, with the lines of those calls."""
    cached = source.cache.get("returned_attentions")
    if cached is not None:
        return cached
    out: dict[str, list[int]] = {}
    for site in pysource.calls(source, _FORCED_TEXT, "generate"):
        call = site.node
        if not isinstance(call.func, ast.Attribute):
            continue
        asked = pysource.keyword(call, "output_attentions")
        returned = pysource.keyword(call, "return_dict_in_generate")
        if (
            asked is not None
            and returned is not None
            and pysource.is_true(asked.value)
            and pysource.is_true(returned.value)
        ):
            out.setdefault(ast.unparse(call.func.value), []).append(call.lineno)
    source.cache["returned_attentions"] = out
    return out


def _eager_models(source: SourceFile) -> dict[str, int]:
    """Models loaded with eager attention: `X = ...from_pretrained(..., attn_implementation="eager")`, by the text
    of X, with the line of the pin."""
    cached = source.cache.get("eager_models")
    if cached is not None:
        return cached
    out: dict[str, int] = {}
    for node in ast.walk(source.tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        value: ast.expr = node.value
        while isinstance(value, ast.Call):  # from_pretrained(...).to(device).eval()
            for kw in value.keywords:
                pin = _sets_implementation(kw)
                if isinstance(pin, ast.Constant) and pin.value == "eager":
                    out.setdefault(ast.unparse(node.targets[0]), pin.lineno)
            value = value.func.value if isinstance(value.func, ast.Attribute) else value.func
    source.cache["eager_models"] = out
    return out


def _called_model(call: ast.Call, scope: ast.AST) -> str | None:
    """The model a loading call names: its first argument or model keyword, as a string or a name assigned one."""
    for expr in call.args[:1] + [kw.value for kw in call.keywords if kw.arg in serving.MODEL_ARGS]:
        value = pysource.resolve(expr, scope, call.lineno)
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
        if (default := pysource.env_default(value)) is not None:
            return default  # MODEL_ID = os.environ.get("MODEL_ID", "openai/gpt-oss-20b")
    return None


def _mxfp4_quantized(call: ast.Call, scope: ast.AST) -> bool:
    """Whether a loading call (or the kwargs dict beside the eager pin) quantizes with `Mxfp4Config`: transformers
    5.23 has MXFP4 kernels for gpt-oss's experts only (Mxfp4GptOssExperts), and gpt-oss has no sdpa."""
    quantization = pysource.keyword(call, "quantization_config")
    if quantization is None:
        return False
    value = pysource.resolve(quantization.value, scope, call.lineno)
    return isinstance(value, ast.Call) and pysource.called_name(value) == "Mxfp4Config"


# Export to another runtime (ONNX, TorchScript, torch.export, Core ML): the graph traced is what runs, not PyTorch's
# fused sdpa kernels, and eager is the path that traces (harrrshall/xtts-v2-hinglish-synthetic pins it for the ONNX
# export of XTTS's GPT-2: the 4.5x sdpa mask is built with torch.vmap, which tracing refuses). Known by an export call
# in the file, a target runtime in the file's or the function's name, or "export" there in a file that names one.
_EXPORT_CALL = re.compile(r"torch\.onnx\.|torch\.jit\.(?:trace|script)|torch\.export\.|coremltools|dynamo_export")
_RUNTIME = re.compile(r"onnx|torchscript|coreml|tflite|tensorrt", re.I)


def _exporting(source: SourceFile, scope: ast.AST) -> bool:
    if _EXPORT_CALL.search(source.text):
        return True
    names = [os.path.basename(source.path)]
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        names.append(scope.name)
    if any(_RUNTIME.search(name) for name in names):
        return True
    return any("export" in name.lower() for name in names) and bool(_RUNTIME.search(source.text))


# Settings asking for bitwise-reproducible training: sdpa's fused backward kernels are not deterministic, so eager is
# chosen on purpose there.
_DETERMINISM = ("full_determinism", "use_deterministic_algorithms")


# Model types whose transformers classes have no sdpa path (`_supports_sdpa` False in transformers 5.23.0, read off
# the classes of every auto mapping): loading them with attn_implementation="sdpa" raises ValueError, so "eager" there
# is required, not a leftover. Vision and encoder-only types are in the list too (it is what transformers says).
EAGER_ONLY_TYPES = frozenset(
    """align autoformer bark big_bird bigbird_pegasus bit blip bloom bridgetower bros canine clap clvp codegen convbert
    convnext convnextv2 cpmant cvt dab-detr dac deberta deberta-v2 deepseek_v4 dinat dinov3_convnext donut-swin
    efficientnet encodec falcon_mamba fastspeech2_conformer fastspeech2_conformer_with_hifigan flaubert flava flint fnet
    focalnet fsmt funnel gemma2 gemma4_audio git glpn got_ocr2 gpt_neo gpt_neox_japanese gpt_oss gptj granite_swa
    granitemoe_swa grounding-dino groupvit hgnet_v2 hiera hy_v4 ibert imagegpt informer inkling2 inkling2_text
    layoutlmv2 layoutlmv3 led levit lilt longformer longt5 luke lxmert mamba mamba2 markuplm mask2former maskformer
    maskformer-swin megatron-bert mgp-str mimo_v2_flash mm-grounding-dino mobilenet_v1 mobilenet_v2 mobilevit
    mobilevitv2 mpnet mpt mra mvp nllb-moe nystromformer omdet-turbo oneformer openai-gpt openai_privacy_filter
    patchtsmixer pegasus_x perceiver poolformer pp_chart2table pp_ocrv6_medium_det pp_ocrv6_small_det prophetnet pvt
    pvt_v2 reformer regnet rembert resnet roformer rwkv seggpt sew-d speech_to_text speecht5 splinter squeezebert
    swiftformer swin2sr swinv2 switch_transformers t5gemma table-transformer tapas textnet time_series_transformer
    timesformer trocr tvp univnet uvdoc vaultgemma vibevoice_acoustic_tokenizer vibevoice_acoustic_tokenizer_decoder
    vibevoice_acoustic_tokenizer_encoder videoprism videoprism_vision_model vilt visual_bert vitdet vits wavlm xcodec
    xglm xlm xlnet xlstm yoso""".split()  # noqa: SIM905 (a word list reads better than 146 quoted strings)
)

# How Hub names spell the language-model and speech architectures of that list ("google/gemma-2-9b": gemma2, but
# "google/gemma-2b" is the first Gemma, which has sdpa), and Gemma 3 / 3n, which have sdpa but for which eager is the
# recommended choice: transformers 4.50-4.5x warned "It is strongly recommended to train Gemma3 models with the `eager`
# attention implementation" (LLaMA-Factory #7755: loss 0 with sdpa), and Gemma 3n's vision tower needs it (unsloth
# notebooks #196).
_EAGER_NAMES = re.compile(
    r"(?<![a-z])gemma[-_]?2(?![\d.b])|(?<![a-z])gemma[-_]?3n?(?![\d.])|vaultgemma|t5gemma|gpt-?oss|deepseek-?v4"
    r"|(?<![a-z])mamba|rwkv|(?<![a-z])bloom"
    r"|gpt-neo(?!x)|gpt-j(?![a-z])|codegen2?-\d|mosaicml/mpt|xglm|xlstm|openai-gpt|mimo-v2-flash|suno/bark|speecht5"
    r"|mms-tts|(?<![a-z])vits|fastspeech2|clvp",
    re.I,
)


def eager_expected(model_name: str) -> bool:
    """Whether a model name (a Hub id or a path) names an architecture transformers runs with eager attention only,
    or one it told users to train with eager (Gemma 3)."""
    return _EAGER_NAMES.search(model_name) is not None


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
        model_type = doc.data.get("model_type") if doc is not None else None
        model_type = model_type if isinstance(model_type, str) else ""
        if doc is None or model_type in EAGER_ONLY_TYPES or eager_expected(model_type):
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
        pins = [entry for entry in target.find(*ATTN_KEYS) if entry.value == "eager"]
        if not pins or any(eager_expected(model) for model in serving.config_models(target)):
            return
        deterministic = any(str(e.value).lower() == "true" for e in target.find(*_DETERMINISM))
        note = (
            "eager beside full_determinism: sdpa's fused backward kernels are not deterministic, so eager is the "
            "reproducible choice (slower)"
            if deterministic
            else f"eager in a training config: {EAGER_EFFECT}"
        )
        for entry in pins:
            yield self.finding(
                f"{entry.key}: {note}",
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                severity=Severity.INFO if deterministic else None,
            )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not pysource.mentions(source.text, "eager", _EAGER_TEXT):
            return
        calls = {id(kw): site for site in pysource.calls(source, _EAGER_TEXT) for kw in site.node.keywords}
        file_models = serving.loaded_models(source) + serving.loaded_model_defaults(source)
        deterministic = any(word in source.text for word in _DETERMINISM)
        for node, scope, _loop in pysource.nodes(source, _EAGER_TEXT):
            value = _sets_implementation(node)
            if not (isinstance(value, ast.Constant) and value.value == "eager"):
                continue
            if _selects_implementation(node, scope) or _under_fallback_test(node, scope, source):
                continue  # eager as one branch of a choice or as a fallback, not a pin
            site = calls.get(id(node))
            model = _called_model(site.node, scope) if site is not None else None
            if any(eager_expected(name) for name in ([model] if model is not None else file_models)):
                continue  # an architecture without sdpa: eager is required there
            if site is not None and _mxfp4_quantized(site.node, scope):
                continue  # gpt-oss, named by its quantization when the model id comes from elsewhere
            fix = None
            segment = pysource.segment(source, value)
            where = pysource.span(source, value)
            if segment in ('"eager"', "'eager'") and where is not None:
                fix = Fix(
                    "Use sdpa attention",
                    Applicability.SAFE,
                    (ReplaceSource(source.path, where[0], where[1], segment[0] + "sdpa" + segment[0]),),
                )
            returned = _returned_attentions(source)
            serves = [
                returned[model][0]
                for model, line in _eager_models(source).items()
                if line == value.lineno and model in returned
            ]
            if serves:  # a model loaded to return attention weights: only eager computes them
                yield self.finding(
                    f'attention pinned to "eager" for a model whose generate() returns attention weights '
                    f"({source.line_name(serves[0])}): only eager computes them; every forward of this model pays "
                    "for the full attention matrix",
                    source.path,
                    line=value.lineno,
                    column=value.col_offset + 1,
                    severity=Severity.INFO,
                )
                continue
            asked_at = _attentions_asked_at(scope)
            if asked_at is not None:  # the fix would leave it without attention weights: sdpa returns none
                yield self.finding(
                    f'attention switched to "eager" to read attention weights (output_attentions=True at line '
                    f"{asked_at}): every forward pays for the full attention matrix; ask for them only when they are "
                    "used (a debug flag), since sdpa returns none",
                    source.path,
                    line=value.lineno,
                    column=value.col_offset + 1,
                )
                continue
            why_not = None  # a reason eager may be meant: the finding is then info, with no fix
            if site is not None and pysource.is_true(
                getattr(pysource.keyword(site.node, "trust_remote_code"), "value", None)
            ):
                why_not = (
                    'attention pinned to "eager" while loading remote code (trust_remote_code=True): custom model '
                    "code often implements eager only; where it supports sdpa, sdpa is faster"
                )
            elif _exporting(source, scope):
                why_not = (
                    'attention pinned to "eager" for an export (ONNX, TorchScript, torch.export): the traced graph '
                    "runs in the target runtime, not on PyTorch's sdpa kernels, and eager is the path that traces"
                )
            elif deterministic:
                why_not = (
                    'attention pinned to "eager" in a file asking for deterministic training: sdpa\'s fused backward '
                    "kernels are not deterministic, so eager is the reproducible choice (slower)"
                )
            yield self.finding(
                why_not or f'attention pinned to "eager": {EAGER_EFFECT}',
                source.path,
                line=value.lineno,
                column=value.col_offset + 1,
                fix=None if why_not else fix,
                severity=Severity.INFO if why_not else None,
            )
