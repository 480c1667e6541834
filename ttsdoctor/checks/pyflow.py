"""Where a value in a Python module comes from, as far as that one module shows it.

A small, honest data flow for the source rules: a name is followed to its last binding before the use in the
same function (then the module): an assignment, a tuple unpacking, a `for` or `with` target, a parameter, an
import. Values are classified by their origin, never by comments, docstrings or string contents:

- a `generate` receiver is a transformers model when it traces back to `from_pretrained` (or a constructor) of a
  transformers, peft or unsloth class, a class named like a transformers model (`...ForCausalLM`,
  `...ForConditionalGeneration`), or a class of this module that subclasses one; it is something else when it
  traces to another library (vLLM's `LLM`, llama.cpp's `Llama`, a TTS package's own class) or is called with text;
- a `**kwargs` argument carries an attention mask when it is a tokenizer's output, does not when it is a dict of
  generation settings, and is unknown otherwise;
- a prompt is a padded batch when it comes from a DataLoader batch or a tokenizer call with `padding=` or a list
  of texts, and a single prompt when it comes from `apply_chat_template` or a tokenizer call on one string.

Anything the module does not show stays unknown, and the rules say so.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import msgspec

from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.checks import pysource

HF_ROOTS = frozenset({"transformers", "peft", "unsloth", "trl", "optimum"})
NOT_HF_ROOTS = frozenset(
    {"vllm", "llama_cpp", "sglang", "mlx_lm", "mlx", "exllamav2", "ctransformers", "openai", "tensorrt_llm",
     "lmdeploy", "onnxruntime", "ollama", "litellm", "anthropic", "torch"}
)  # fmt: skip
HF_MODEL_NAME = re.compile(
    r"(ForCausalLM|ForConditionalGeneration|LMHeadModel|ForSeq2SeqLM|ForTextToSpeech|ForSpeechSeq2Seq|"
    r"ForTextToWaveform)$|^(AutoModel\w*|FastLanguageModel|FastModel|FastVisionModel|PeftModel\w*|AutoPeftModel\w*)$"
)
HF_BASES = re.compile(r"^(PreTrainedModel|GenerationMixin)$|" + HF_MODEL_NAME.pattern)
PASS_THROUGH = frozenset(
    {"to", "cuda", "cpu", "eval", "train", "half", "float", "bfloat16", "requires_grad_", "merge_and_unload",
     "get_base_model", "contiguous", "long", "int", "squeeze", "detach", "clone", "for_inference"}
)  # fmt: skip
TOKENIZER_CALLS = frozenset({"encode_plus", "batch_encode_plus", "apply_chat_template", "pad"})
GEN_SETTINGS_NAME = re.compile(r"gen|sampling|decod|sample_kw", re.IGNORECASE)
TOKENIZER_NAME = re.compile(r"token|processor|tok$|encoder", re.IGNORECASE)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)

HF, OTHER, UNKNOWN = "hf", "other", "unknown"
MASK, NO_MASK = "mask", "no_mask"
BATCH, SINGLE = "batch", "single"
AUDIO = "audio"  # a speech model's audio features: no pad token, so no mask to infer from one
AUDIO_FEATURES = re.compile(r"(^|_)(input_features|input_values|features|feats|mel|mels|spectrogram|waveform)$")


class Origin(msgspec.Struct, frozen=True):
    kind: str
    why: str
    certain: bool = True  # False for a class only named like a transformers model (its package may differ)


class ModuleFacts(msgspec.Struct):
    """Per-module tables, built once: imports, classes, which function belongs to which class."""

    imports: dict[str, str] = {}  # local name -> qualified name
    classes: dict[str, ast.ClassDef] = {}
    class_of: dict[ast.AST, ast.ClassDef] = {}  # method -> its class
    functions: dict[str, ast.AST] = {}
    bindings: dict[ast.AST, dict[str, list[Binding]]] = {}  # scope -> name -> bindings
    self_assigned: dict[ast.AST, dict[str, list[tuple[ast.AST, ast.expr, int]]]] = {}


def facts(source: SourceFile) -> ModuleFacts:
    cached = source.cache.get("pyflow")
    if cached is not None:
        return cached
    out = ModuleFacts()
    for node in pysource.statements(source):  # in ast.walk's order: the first class of a name wins
        if isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b` binds a; `import a.b as c` binds c to a.b
                local = alias.asname or alias.name.split(".")[0]
                out.imports[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                out.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.ClassDef):
            out.classes.setdefault(node.name, node)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.class_of[item] = node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.functions.setdefault(node.name, node)
    source.cache["pyflow"] = out
    return out


class Context(msgspec.Struct):
    source: SourceFile
    scope: ast.AST  # the function (or module) the expression is in
    line: int

    @property
    def facts(self) -> ModuleFacts:
        return facts(self.source)

    def at(self, scope: ast.AST, line: int) -> Context:
        return Context(self.source, scope, line)


class Binding(msgspec.Struct, frozen=True):
    kind: str  # "assign" | "tuple" | "for" | "with" | "param" | "import"
    value: ast.expr | None = None
    index: int | None = None
    qualified: str | None = None
    scope: ast.AST | None = None
    line: int = 0


def scope_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope, not descending into nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _node_bindings(node: ast.AST, scope: ast.AST, line: int) -> dict[str, Binding]:
    """The names one statement binds (for several targets of one statement, the last target's binding)."""
    out: dict[str, Binding] = {}
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                out[target.id] = Binding("assign", node.value, scope=scope, line=line)
            elif isinstance(target, (ast.Tuple, ast.List)):
                first: dict[str, int] = {}
                for i, elt in enumerate(target.elts):
                    if isinstance(elt, ast.Name):
                        first.setdefault(elt.id, i)
                for name, i in first.items():
                    out[name] = Binding("tuple", node.value, index=i, scope=scope, line=line)
    elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
        out[node.target.id] = Binding("assign", node.value, scope=scope, line=line)
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        names = [node.target] if isinstance(node.target, ast.Name) else getattr(node.target, "elts", [])
        for elt in names:
            if isinstance(elt, ast.Name):
                out[elt.id] = Binding("for", node.iter, scope=scope, line=line)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        for item in node.items:
            if isinstance(item.optional_vars, ast.Name):
                out[item.optional_vars.id] = Binding("with", item.context_expr, scope=scope, line=line)
    return out


def _scope_bindings(ctx: Context, scope: ast.AST) -> dict[str, list[Binding]]:
    """Every binding of one scope by name, in the order `scope_nodes` visits them (built once per scope)."""
    index = ctx.facts.bindings.get(scope)
    if index is None:
        index = ctx.facts.bindings[scope] = {}
        for node in scope_nodes(scope):
            for name, found in _node_bindings(node, scope, getattr(node, "lineno", 0)).items():
                index.setdefault(name, []).append(found)
    return index


def binding(ctx: Context, name: str) -> Binding | None:
    """The last binding of `name` before ctx.line in ctx.scope, else in the module; imports last."""
    for scope, limit in ((ctx.scope, ctx.line), (ctx.source.tree, None)):
        best: Binding | None = None
        for found in _scope_bindings(ctx, scope).get(name, ()):
            if limit is not None and found.line >= limit:
                continue
            if best is None or found.line >= best.line:
                best = found
        if best is not None:
            return best
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = scope.args
            params = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
            if name in params:
                return Binding("param", scope=scope)
    qualified = ctx.facts.imports.get(name)
    if qualified is not None:
        return Binding("import", qualified=qualified)
    return None


def _qualified(expr: ast.expr, ctx: Context) -> str | None:
    """`transformers.AutoModel` for `AutoModel` imported from transformers, or for `transformers.AutoModel`."""
    if isinstance(expr, ast.Name):
        found = binding(ctx, expr.id)
        return found.qualified if found is not None and found.kind == "import" else None
    if isinstance(expr, ast.Attribute):
        base = _qualified(expr.value, ctx)
        return f"{base}.{expr.attr}" if base is not None else None
    return None


def _root(qualified: str) -> str:
    return qualified.split(".")[0]


def _class_origin(expr: ast.expr, ctx: Context, depth: int) -> Origin:
    """What kind of class (or factory) `expr` is, for `expr.from_pretrained(...)` or `expr(...)`."""
    qualified = _qualified(expr, ctx)
    if qualified is not None:
        last = qualified.rsplit(".", 1)[-1]
        if _root(qualified) in HF_ROOTS:
            if HF_MODEL_NAME.search(last):
                return Origin(HF, f"{qualified} is a transformers model class")
            return Origin(UNKNOWN, f"{qualified} is not a model class ttsdoctor knows")
        if _root(qualified) in NOT_HF_ROOTS:
            return Origin(OTHER, f"{qualified} is not a transformers model")
        if HF_MODEL_NAME.search(last):
            return Origin(HF, f"{qualified} is named as a transformers model class", certain=False)
        return Origin(OTHER, f"{qualified} comes from {_root(qualified)}, not transformers")
    if isinstance(expr, ast.Name):
        local = ctx.facts.classes.get(expr.id)
        if local is not None:
            return _local_class(local, ctx)
        found = binding(ctx, expr.id)
        if found is not None and found.kind == "assign" and found.value is not None and depth < 6:
            return _class_origin(found.value, ctx.at(found.scope or ctx.scope, found.line or ctx.line), depth + 1)
    return Origin(UNKNOWN, f"{_text(ctx, expr)} could not be traced")


def _local_class(node: ast.ClassDef, ctx: Context) -> Origin:
    for base in node.bases:
        qualified = _qualified(base, ctx)
        name = qualified.rsplit(".", 1)[-1] if qualified else getattr(base, "id", getattr(base, "attr", ""))
        if (qualified is not None and _root(qualified) in HF_ROOTS) or (name and HF_BASES.search(name)):
            return Origin(HF, f"{node.name} subclasses {qualified or name}")
    return Origin(OTHER, f"{node.name} is a class of this module")


def _self_origin(ctx: Context) -> Origin:
    """`self` in a method: a transformers model when its class subclasses one here; a configuration class (its name
    ends in Config) keeps its own attributes; any other class may (a project base defined elsewhere): not certain."""
    cls = ctx.facts.class_of.get(ctx.scope)
    if cls is None:
        return Origin(UNKNOWN, "self", certain=False)
    local = _local_class(cls, ctx)
    if local.kind == HF:
        return local
    users = [
        c for c in ctx.facts.classes.values() if any(isinstance(b, ast.Name) and b.id == cls.name for b in c.bases)
    ]
    for other in users:
        user = _local_class(other, ctx)
        if user.kind == HF:
            return Origin(HF, f"self is a {cls.name}, mixed into {other.name}: {user.why}")
    if cls.name.endswith("Config"):
        return Origin(OTHER, f"self is a {cls.name}, a configuration class of this project")
    if not users and _plain_class(cls):
        return Origin(OTHER, f"self is a {cls.name}, a plain class of this module (no base class)")
    return Origin(UNKNOWN, f"self is a {cls.name}, whose base is not known here", certain=False)


def _plain_class(cls: ast.ClassDef) -> bool:
    """A class without bases (or only `object`), not named as a mixin: it cannot be a transformers model (vllm-omni's
    MoGStepGraph keeps a dict named generation_config for its own step function). The caller checks that no class of
    the module mixes it in."""
    bases_ok = all(isinstance(b, ast.Name) and b.id == "object" for b in cls.bases) and not cls.keywords
    return bases_ok and not cls.name.endswith("Mixin")


def model_origin(expr: ast.expr, ctx: Context, depth: int = 0) -> Origin:
    """Whether `expr` (a generate receiver) is a transformers model."""
    if depth > 8:
        return Origin(UNKNOWN, "traced too far")
    if isinstance(expr, ast.Name):
        if expr.id == "self":
            return _self_origin(ctx)
        found = binding(ctx, expr.id)
        if found is None:
            return Origin(UNKNOWN, f"{expr.id} is not assigned in this module")
        if found.kind == "import":
            return _class_origin(expr, ctx, depth)
        if found.kind == "param":
            return Origin(UNKNOWN, f"{expr.id} is a parameter")
        if found.kind in ("for", "with") or found.value is None:
            return Origin(UNKNOWN, f"{expr.id} is bound by a {found.kind} statement")
        if isinstance(found.value, ast.Constant):  # `generator = None`, set later through `global`
            shown = repr(found.value.value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return Origin(UNKNOWN, f"{expr.id} is {shown} where it is assigned in this scope")
        inner = ctx.at(found.scope or ctx.scope, found.line or ctx.line)
        if found.kind == "tuple":
            if isinstance(found.value, ast.Call) and found.index == 0:
                origin = model_origin(found.value, inner, depth + 1)  # (model, tokenizer) = X.from_pretrained(...)
                if origin.kind == HF and _called_attr(found.value) == "from_pretrained":
                    return origin
                if origin.kind == OTHER:
                    return origin
            return Origin(UNKNOWN, f"{expr.id} is unpacked from {_text(ctx, found.value)}")
        return model_origin(found.value, inner, depth + 1)
    if isinstance(expr, ast.Attribute):
        if isinstance(expr.value, ast.Name) and expr.value.id == "self":
            return _self_attribute(expr.attr, ctx, depth)
        if _qualified(expr, ctx) is not None:
            return _class_origin(expr, ctx, depth)
        return Origin(UNKNOWN, f"{_text(ctx, expr)} is an attribute ttsdoctor cannot follow")
    if isinstance(expr, ast.Call):
        func = expr.func
        if isinstance(func, ast.Attribute) and func.attr in PASS_THROUGH:
            return model_origin(func.value, ctx, depth + 1)
        if isinstance(func, ast.Attribute) and func.attr in ("from_pretrained", "from_config", "from_single_file"):
            return _class_origin(func.value, ctx, depth)
        qualified = _qualified(func, ctx)
        if qualified is not None:
            last = qualified.rsplit(".", 1)[-1]
            if _root(qualified) in HF_ROOTS and last in ("get_peft_model", "prepare_model_for_kbit_training"):
                return Origin(HF, f"{qualified} returns the transformers model it wraps")
            if last == "pipeline":
                return Origin(OTHER, "a pipeline, not a model")
            return _class_origin(func, ctx, depth)
        if isinstance(func, ast.Name) and func.id in ctx.facts.classes:
            return _local_class(ctx.facts.classes[func.id], ctx)
        return Origin(UNKNOWN, f"{_text(ctx, expr)} returns a value ttsdoctor cannot follow")
    if isinstance(expr, ast.Subscript):
        return Origin(UNKNOWN, f"{_text(ctx, expr)} is an item of a container")
    return Origin(UNKNOWN, f"{_text(ctx, expr)} could not be traced")


def _self_assignments(ctx: Context, cls: ast.ClassDef) -> dict[str, list[tuple[ast.AST, ast.expr, int]]]:
    """`self.NAME = value` in the methods of a class: NAME -> (method, value, line), in source order of the
    methods (built once per class)."""
    index = ctx.facts.self_assigned.get(cls)
    if index is None:
        index = ctx.facts.self_assigned[cls] = {}
        for method in cls.body:
            if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in scope_nodes(method):
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        owner = target.value if isinstance(target, ast.Attribute) else None
                        if isinstance(target, ast.Attribute) and isinstance(owner, ast.Name) and owner.id == "self":
                            index.setdefault(target.attr, []).append((method, node.value, node.lineno))
    return index


def _self_attribute(attr: str, ctx: Context, depth: int) -> Origin:
    cls = ctx.facts.class_of.get(ctx.scope)
    if cls is None:
        return Origin(UNKNOWN, f"self.{attr} outside a class")
    assigned = _self_assignments(ctx, cls).get(attr, ())
    if any(not isinstance(value, ast.Constant) for _method, value, _line in assigned):
        # `self.model = None` in __init__ is a placeholder for the model loaded later
        assigned = [(m, value, line) for m, value, line in assigned if not isinstance(value, ast.Constant)]
    origins = [model_origin(value, ctx.at(method, line + 1), depth + 1) for method, value, line in assigned]
    if any(o.kind == HF for o in origins):
        return next(o for o in origins if o.kind == HF)
    if origins and all(o.kind == OTHER for o in origins):
        return origins[0]
    return Origin(UNKNOWN, f"self.{attr} is not assigned from a traceable model in {cls.name}")


def _called_attr(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def _callee_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _strip(expr: ast.expr) -> ast.expr:
    while isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr in PASS_THROUGH:
        expr = expr.func.value
    return expr


def _resolve(expr: ast.expr, ctx: Context) -> tuple[ast.expr, Context, Binding | None]:
    """Follow a bare name to the value last assigned to it (one step at a time, a few steps)."""
    found = None
    for _ in range(6):
        expr = _strip(expr)
        if not isinstance(expr, ast.Name):
            break
        found = binding(ctx, expr.id)
        if found is None or found.kind != "assign" or found.value is None:
            break
        ctx = ctx.at(found.scope or ctx.scope, found.line or ctx.line)
        expr = found.value
    return _strip(expr), ctx, found


def _is_tokenizer_call(call: ast.Call, ctx: Context) -> bool:
    name = _callee_name(call)
    if name in TOKENIZER_CALLS:
        return name != "apply_chat_template" or any(
            kw.arg == "return_dict" and isinstance(kw.value, ast.Constant) and kw.value.value is True
            for kw in call.keywords
        )
    if isinstance(call.func, ast.Name):
        found = binding(ctx, call.func.id)
        if found is not None and found.kind in ("assign", "tuple") and isinstance(found.value, ast.Call):
            qualified = _qualified(found.value.func, ctx) or ""
            attr = _called_attr(found.value)
            if attr == "from_pretrained" and isinstance(found.value.func, ast.Attribute):
                qualified = _qualified(found.value.func.value, ctx) or ""
            if re.search(r"Tokenizer|Processor|FeatureExtractor", qualified):
                return True
            if found.kind == "tuple" and found.index == 1 and attr == "from_pretrained":
                return True  # model, tokenizer = FastLanguageModel.from_pretrained(...)
        return bool(TOKENIZER_NAME.search(call.func.id))
    return isinstance(call.func, ast.Attribute) and call.func.attr in (
        "tokenizer",
        "processor",
        "tok",
        "text_tokenizer",
    )


def mask_carrier(expr: ast.expr, ctx: Context) -> Origin:
    """Whether a `**expr` argument carries an attention mask."""
    value, inner, _ = _resolve(expr, ctx)
    if isinstance(value, ast.Dict):
        keys = [k.value for k in value.keys if isinstance(k, ast.Constant)]
        if "attention_mask" in keys:
            return Origin(MASK, "the dict has attention_mask")
        if any(k is None for k in value.keys):
            return Origin(UNKNOWN, "the dict unpacks another mapping")
        return Origin(NO_MASK, f"{_text(ctx, expr)} is a dict of generation settings without attention_mask")
    if isinstance(value, ast.Call):
        if _is_tokenizer_call(value, inner):
            return Origin(MASK, f"{_text(ctx, expr)} is a tokenizer's output, which carries the mask")
        if _callee_name(value) == "dict":
            names = [kw.arg for kw in value.keywords]
            if "attention_mask" in names:
                return Origin(MASK, "the dict has attention_mask")
            if None not in names:
                return Origin(NO_MASK, f"{_text(ctx, expr)} is a dict of generation settings without attention_mask")
    text = _text(ctx, expr)
    tail = text.rsplit(".", 1)[-1]
    if GEN_SETTINGS_NAME.search(tail) and not TOKENIZER_NAME.search(tail):
        return Origin(NO_MASK, f"{text} holds generation settings")
    if re.search(r"input|encod|batch|token", tail, re.IGNORECASE):
        return Origin(MASK, f"{text} looks like encoded inputs, which carry the mask")
    return Origin(UNKNOWN, f"**{text} may carry an attention_mask")


def prompt_shape(expr: ast.expr, ctx: Context) -> Origin:
    """Whether the prompt passed to generate is a padded batch, a single prompt, or unknown."""
    value, inner, found = _resolve(expr, ctx)
    if _audio_features(value) or (
        _audio_features(_strip(expr))
        and not any(isinstance(n, ast.Call) and _is_tokenizer_call(n, inner) for n in ast.walk(value))
    ):
        return Origin(AUDIO, f"{_text(ctx, expr)} are audio features")
    if found is not None and found.kind == "for":
        return _batch_from_loop(found, inner, _text(ctx, expr))
    if isinstance(value, ast.Attribute) and value.attr == "input_ids":
        return _encoding_shape(value.value, inner)
    if isinstance(value, ast.Subscript) and _subscript_key(value) == "input_ids":
        return _encoding_shape(value.value, inner)
    if isinstance(value, ast.Call):
        return _call_shape(value, inner)
    return Origin(UNKNOWN, f"where {_text(ctx, expr)} comes from is not shown in this module")


def _audio_features(node: ast.expr) -> bool:
    """`input_features`, `batch["input_values"]`, `mel`: named as a speech model's audio input."""
    name = _subscript_key(node) if isinstance(node, ast.Subscript) else _tail(node)
    return isinstance(name, str) and AUDIO_FEATURES.search(name) is not None


def _subscript_key(node: ast.Subscript) -> object:
    key = node.slice
    return key.value if isinstance(key, ast.Constant) else None


def _encoding_shape(expr: ast.expr, ctx: Context) -> Origin:
    value, inner, found = _resolve(expr, ctx)
    if found is not None and found.kind == "for":
        return _batch_from_loop(found, inner, _text(ctx, expr))
    if isinstance(value, ast.Call):
        return _call_shape(value, inner)
    return Origin(UNKNOWN, f"where {_text(ctx, expr)} comes from is not shown in this module")


def _batch_from_loop(found: Binding, ctx: Context, text: str) -> Origin:
    iterable = _strip(found.value) if found.value is not None else None
    if iterable is None:
        return Origin(UNKNOWN, f"{text} is a loop variable")
    source = iterable
    if isinstance(iterable, ast.Name):
        bound = binding(ctx, iterable.id)
        if bound is not None and bound.kind == "assign" and isinstance(bound.value, ast.Call):
            source = bound.value
    name = _text(ctx, iterable)
    if (isinstance(source, ast.Call) and _callee_name(source) == "DataLoader") or re.search(r"loader", name, re.I):
        return Origin(BATCH, f"{text} is a batch from {name}, padded to one length")
    return Origin(UNKNOWN, f"{text} is a loop variable over {name}")


def _call_shape(call: ast.Call, ctx: Context) -> Origin:
    name = _callee_name(call)
    if name == "apply_chat_template":
        return Origin(SINGLE, "a single prompt from apply_chat_template")
    if name in ("encode",):
        return Origin(SINGLE, "a single prompt from encode()")
    if _is_tokenizer_call(call, ctx) or name in ("batch_encode_plus", "encode_plus"):
        padding = next((kw.value for kw in call.keywords if kw.arg == "padding"), None)
        first = call.args[0] if call.args else next((kw.value for kw in call.keywords if kw.arg == "text"), None)
        if padding is not None and not (isinstance(padding, ast.Constant) and padding.value in (False, None)):
            pads_to_longest = isinstance(padding, ast.Constant) and padding.value in (True, "longest")
            if pads_to_longest and first is not None and _is_text(first, ctx):
                # padding to the longest of one text adds nothing ("max_length" would pad it)
                return Origin(SINGLE, f"a single text ({_text(ctx, call.func)}(padding={_text(ctx, padding)}) pads "
                              "nothing)")  # fmt: skip
            return Origin(BATCH, f"padded by {_text(ctx, call.func)}(padding={_text(ctx, padding)})")
        if isinstance(first, (ast.List, ast.ListComp)) and not (isinstance(first, ast.List) and len(first.elts) < 2):
            return Origin(BATCH, "a list of texts")
        if first is not None and _is_text(first, ctx):
            return Origin(SINGLE, "a single text")
        return Origin(UNKNOWN, f"{_text(ctx, call)} may encode one text or several")
    return Origin(UNKNOWN, f"{_text(ctx, call)} is not a tokenizer call ttsdoctor knows")


_STR_METHODS = frozenset({"format", "strip", "lstrip", "rstrip", "replace", "lower", "upper", "join"})


def _is_text(expr: ast.expr, ctx: Context, depth: int = 0) -> bool:
    """Whether an expression is one string: a literal, an f-string, `"...".format(...)` or a str method of one,
    `+` or `%` on one, or a name assigned one of those in this module."""
    if depth > 4:
        return False
    value, inner, _ = _resolve(expr, ctx)
    if isinstance(value, ast.JoinedStr) or (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        return True
    if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Add, ast.Mod)):
        return _is_text(value.left, inner, depth + 1)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in _STR_METHODS:
        return _is_text(value.func.value, inner, depth + 1)
    return False


def text_api_call(call: ast.Call, ctx: Context) -> bool:
    """A generate call that passes text (a TTS library's own API), which a transformers model never takes."""
    if any(
        kw.arg in ("text", "texts", "audio_prompt_path", "audio_prompt", "speaker", "voice") for kw in call.keywords
    ):
        return True
    if not call.args:
        return False
    first, _, _ = _resolve(call.args[0], ctx)
    return isinstance(first, ast.JoinedStr) or (isinstance(first, ast.Constant) and isinstance(first.value, str))


def _text(ctx: Context, node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # unparse handles every node the parser makes; stay safe on odd ones
        return "<expression>"
    return text if len(text) <= 60 else text[:57] + "..."


# --- pad == eos in a module, and what makes it matter ---------------------------------------------------------

PAD_NAMES = frozenset({"pad_token", "pad_token_id"})
EOS_NAMES = frozenset({"eos_token", "eos_token_id"})
TRAINERS = frozenset({"Trainer", "SFTTrainer", "Seq2SeqTrainer", "DPOTrainer", "GRPOTrainer", "ORPOTrainer"})


def _tail(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _mentions_pad(node: ast.AST) -> bool:
    return any(_tail(n) in PAD_NAMES or (_tail(n) or "").endswith("pad_token_id") for n in ast.walk(node))


def _trl_collator(source: SourceFile, call: ast.Call) -> bool:
    """TRL's DataCollatorForLanguageModeling (trl >= 0.17, `pad_token_id=`): it pads the labels with -100 by
    length and masks nothing by the pad id, unlike transformers' collator of that name."""
    if any(k.arg == "pad_token_id" for k in call.keywords):
        return True  # transformers' collator has no such parameter (it takes the tokenizer)
    qualified = _qualified(call.func, Context(source, source.tree, call.lineno))
    return qualified is not None and _root(qualified) == "trl"


class PadFacts(msgspec.Struct, frozen=True):
    pad_is_eos: tuple[tuple[ast.Assign, bool], ...]  # (assignment, guarded by an `if ... pad ... is None`)
    masks_pad: tuple[tuple[ast.AST, str], ...]  # nodes that mask by comparison with the pad id, and what they do
    trains: ast.AST | None  # a Trainer / collator call or a backward(): the module trains
    sft_default: ast.Call | None = None  # SFTTrainer(...) without a data_collator: TRL's default collator


def pad_facts(source: SourceFile) -> PadFacts:
    cached = source.cache.get("pad_facts")
    if cached is not None:
        return cached
    pad_is_eos: list[tuple[ast.Assign, bool]] = []
    masks: list[tuple[ast.AST, str]] = []
    trains: ast.AST | None = None
    sft_default: ast.Call | None = None
    stop = source.stops_at  # code after a top-level quit() does not run: its collator masks nothing
    stack: list[tuple[ast.AST, bool]] = [(source.tree, False)]
    while stack:
        node, guarded = stack.pop()
        if stop is not None and getattr(node, "lineno", 0) > stop[0]:
            continue
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if _tail(target) in PAD_NAMES and isinstance(target, ast.Attribute) and _tail(node.value) in EOS_NAMES:
                pad_is_eos.append((node, guarded))
            if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Compare):
                cmp = target.slice
                if any(isinstance(op, ast.Eq) for op in cmp.ops) and _mentions_pad(cmp):
                    masks.append((node, "masks the labels where the input equals the pad id"))
            if "mask" in (_tail(target) or "") and any(
                isinstance(n, ast.Compare) and any(isinstance(op, ast.NotEq) for op in n.ops) and _mentions_pad(n)
                for n in ast.walk(node.value)
            ):
                masks.append((node, "builds the attention mask as input != pad id"))
        if isinstance(node, ast.Call):
            name = _callee_name(node)
            if name == "DataCollatorForLanguageModeling" and not _trl_collator(source, node):
                masks.append(
                    (node, "uses DataCollatorForLanguageModeling, which sets labels equal to the pad id to -100")
                )
            if name == "masked_fill" and _mentions_pad(node):
                masks.append((node, "masks positions equal to the pad id"))
            if trains is None and (name in TRAINERS or name == "backward" or name.startswith("DataCollator")):
                trains = node
            own_collator = len(node.args) >= 3 or any(k.arg in ("data_collator", None) for k in node.keywords)
            if name == "SFTTrainer" and sft_default is None and not own_collator:  # (model, args, data_collator)
                sft_default = node
        child_guard = guarded
        if isinstance(node, ast.If) and _mentions_pad(node.test):
            child_guard = True
        stack.extend((child, child_guard) for child in ast.iter_child_nodes(node))
    result = PadFacts(tuple(pad_is_eos), tuple(masks), trains, sft_default)
    source.cache["pad_facts"] = result
    return result
