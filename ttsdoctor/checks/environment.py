"""ENV: the installed environment against what the model directory asks for."""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
from collections.abc import Iterator

import msgspec

from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.checks import pysource
from ttsdoctor.checks.serving import (
    LOADERS,
    MODEL_ARGS,
    family_names_in,
    names_a_family,
    option_defaults,
    source_family,
)
from ttsdoctor.codecs import ServingFacts, serving_facts
from ttsdoctor.environment import installed_version
from ttsdoctor.finding import Applicability, Finding, Fix, ReplaceSource, Severity
from ttsdoctor.rule import Rule

# Model types of TTS models loaded by their own libraries, not by transformers' auto classes. Several register the
# type with `AutoConfig.register` when imported (qwen_tts: qwen3_tts and its speech tokenizers; boson_multimodal:
# higgs_audio; parler_tts: dac_on_the_hub); fish-speech's dual_ar is its own config class.
OWN_LIBRARY_TYPES = frozenset(
    {
        "parler_tts",
        "dac_on_the_hub",
        "xtts",
        "t3",
        "cosyvoice",
        "cosyvoice2",
        "valle",
        "vall_e",
        "f5_tts",
        "qwen3_tts",
        "qwen3_tts_tokenizer_12hz",
        "qwen3_tts_tokenizer_25hz",
        "higgs_audio",
        "higgs_audio_encoder",
        "dual_ar",
    }
)


@functools.cache
def transformers_registry_text() -> str | None:
    """The source of transformers' auto mappings, read as text (importing transformers costs ~1 s)."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        return None
    auto = os.path.join(os.path.dirname(spec.origin), "models", "auto")
    text = []
    for name in ("auto_mappings.py", "configuration_auto.py"):
        try:
            with open(os.path.join(auto, name), encoding="utf-8") as fh:
                text.append(fh.read())
        except OSError:
            continue
    return "\n".join(text) or None


@functools.cache
def _transformers_dir() -> str | None:
    spec = importlib.util.find_spec("transformers")
    return os.path.dirname(spec.origin) if spec is not None and spec.origin is not None else None


def knows_model_type(model_type: str) -> bool | None:
    """Whether the installed transformers knows a model_type: its model folder, else its auto mappings."""
    root = _transformers_dir()
    if root is None:
        return None
    if os.path.isdir(os.path.join(root, "models", model_type.replace("-", "_"))):
        return True  # the common case, without reading the mapping sources
    text = transformers_registry_text()
    return None if text is None else f'"{model_type}"' in text


class TransformersTooOld(Rule):
    id = "ENV001"
    name = "transformers-too-old"
    summary = (
        "The installed transformers is older than the model's transformers_version or does not know its model_type"
    )
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.config is None:
            return
        config = target.config
        assert config is not None
        installed = installed_version("transformers")
        if installed is None:
            return
        from packaging.version import InvalidVersion, Version

        wanted = config.data.get("transformers_version")
        newer = None
        if isinstance(wanted, str):
            try:
                version = Version(wanted)
            except InvalidVersion:
                version = None
            if version is not None and (version.major, version.minor) > (installed.major, installed.minor):
                newer = wanted
        model_type = target.model_type
        judged = model_type is not None and model_type not in OWN_LIBRARY_TYPES and "auto_map" not in config.data
        if judged and model_type is not None and knows_model_type(model_type) is False:
            line, column = config.position("/model_type")
            if newer is not None:  # saved by a newer transformers: the type most likely came with it
                yield self.finding(
                    f"model_type {model_type!r} is unknown to the installed transformers {installed} and the model "
                    f"was saved with transformers {newer}: AutoConfig / AutoModel fail with 'Unrecognized model'; "
                    "upgrade transformers",
                    config.path,
                    "/model_type",
                    line,
                    column,
                )
            elif target.weights is not None or target.tokenizer is not None:
                # a library may define the type and register it with AutoConfig when imported (qwen_tts does); a
                # config.json alone is often a library's bundled default (mlx-audio's models/chatterbox/config.json)
                yield self.finding(
                    f"model_type {model_type!r} is unknown to the installed transformers {installed} and the folder "
                    "has no auto_map: AutoConfig / AutoModel fail with 'Unrecognized model' unless a library that "
                    f"registers {model_type!r} is imported first. Load it with that library, or upgrade transformers "
                    "if it is a transformers model",
                    config.path,
                    "/model_type",
                    line,
                    column,
                    severity=Severity.WARNING,
                )
        if newer is not None:
            line, column = config.position("/transformers_version")
            yield self.finding(
                f"saved with transformers {newer}, newer than the installed {installed}: config "
                "keys and weight names it introduced are ignored or fail to load; upgrade",
                config.path,
                "/transformers_version",
                line,
                column,
                severity=Severity.WARNING,
            )


@functools.cache
def gpu_compute_capabilities() -> tuple[tuple[str, float], ...] | None:
    """(name, compute capability) of each NVIDIA GPU, from nvidia-smi (no torch import); None without one.

    TTSDOCTOR_GPU="Tesla T4:7.5" checks against that GPU instead (preparing a model for another server)."""
    override = os.environ.get("TTSDOCTOR_GPU")
    if override:
        name, _, cap = override.rpartition(":")
        try:
            return ((name or "GPU", float(cap)),)
        except ValueError:
            return None
    import shutil

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    import subprocess  # only to ask nvidia-smi

    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.splitlines():
        name, _, cap = line.rpartition(",")
        try:
            gpus.append((name.strip(), float(cap)))
        except ValueError:
            continue
    return tuple(gpus) or None


_BF16_TEXT = re.compile(r"bfloat16")


# Calls that load or run a model in the dtype they are given; casts of other tensors (weights converted for saving by
# a quantisation script) are not computation on the GPU
_LOADS = ("from_pretrained", "from_config", "autocast", "LLM", "EngineArgs", "pipeline")
_MODEL_RECEIVER = re.compile(r"model|llm|gpt|decoder|encoder|codec|vocoder", re.I)


def _bf16_sites(source: SourceFile) -> Iterator[tuple[ast.expr, str]]:
    """Where a file asks for bfloat16 unconditionally: `torch_dtype=torch.bfloat16` / `dtype="bfloat16"` passed to a
    call that loads or runs a model, `model.to(torch.bfloat16)`, `model.bfloat16()`. A choice made at run time
    (`torch.bfloat16 if is_bf16_supported() else ...`) is not."""
    for site in pysource.calls(source, _BF16_TEXT):
        call = site.node
        receiver = ast.unparse(call.func.value) if isinstance(call.func, ast.Attribute) else ""
        if site.name in ("bfloat16", "to") and not _MODEL_RECEIVER.search(receiver):
            continue
        if site.name == "bfloat16" and not call.args:
            yield call, f"`{ast.unparse(call)}`"
            continue
        values = []
        if site.name in _LOADS:
            values = [(kw.value, f"{kw.arg}=") for kw in call.keywords if kw.arg in ("torch_dtype", "dtype")]
        if site.name == "to":
            values = [(arg, f"{receiver}.to(") for arg in call.args[:1]]
            values += [(kw.value, f"{receiver}.to(dtype=") for kw in call.keywords if kw.arg == "dtype"]
        for value, how in values:
            if _is_bf16(value):
                yield value, f"`{how}{ast.unparse(value)}{')' if '.to(' in how else ''}`"


def _is_bf16(expr: ast.expr) -> bool:
    if isinstance(expr, ast.Attribute) and expr.attr == "bfloat16" and ast.unparse(expr.value) == "torch":
        return True
    return isinstance(expr, ast.Constant) and expr.value == "bfloat16"


class Bf16Unsupported(Rule):
    id = "ENV002"
    name = "bf16-unsupported"
    summary = "The model asks for bfloat16 on a GPU without bfloat16 support (compute capability below 8.0)"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.config is None:
            return
        config = target.config
        assert config is not None
        for key in ("torch_dtype", "dtype"):
            if config.data.get(key) != "bfloat16":
                continue
            gpus = gpu_compute_capabilities()
            old = [(name, cap) for name, cap in gpus or () if cap < 8.0]
            if not old:
                return
            name, cap = old[0]
            line, column = config.position(f"/{key}")
            facts = target.serving
            yield self.finding(
                f"{key} is bfloat16 but the GPU {name} (compute capability {cap}) has no bfloat16: "
                f"torch emulates it slowly or fails; load with dtype={_fallback_advice(facts)}",
                config.path,
                f"/{key}",
                line,
                column,
                {"gpu": name, "compute_capability": cap},
            )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not _BF16_TEXT.search(source.text):
            return
        old = [(name, cap) for name, cap in gpu_compute_capabilities() or () if cap < 8.0]
        if not old:
            return
        name, cap = old[0]
        facts = source_family(source)
        fallback = _fallback_dtype(facts)
        for node, what in _bf16_sites(source):
            yield self.finding(
                f"{what} at {source.line_name(node.lineno)} asks for bfloat16, but the GPU {name} (compute capability "
                f"{cap}) has none: torch emulates it slowly or the kernels fail. Use {_fallback_advice(facts)} there, "
                "or choose with torch.cuda.is_bf16_supported()",
                source.path,
                line=node.lineno,
                column=node.col_offset + 1,
                evidence={"gpu": name, "compute_capability": cap},
                fix=Fix(
                    f"dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else {fallback}",
                    Applicability.DISPLAY_ONLY,
                ),
            )


def _fallback_dtype(facts: ServingFacts | None) -> str:
    """What to load in where bfloat16 is missing: float16, unless the family overflows it (ENV003)."""
    return "torch.float32" if facts is not None and facts.float16_overflows else "torch.float16"


def _fallback_advice(facts: ServingFacts | None) -> str:
    """The fallback dtype with the reason when it is not the usual float16."""
    dtype = _fallback_dtype(facts)
    return f"{dtype} ({facts.family} overflows float16)" if facts is not None and facts.float16_overflows else dtype


# ENV003: float16 for a family whose activations exceed its range
_FP16_TEXT = re.compile(r"(?<!b)float16|\bhalf\b|fp16")
_LOAD_OR_CAST = re.compile(r"from_pretrained|\bLLM\b|EngineArgs|\bLlama\b|pipeline|\.half\(|\.to\(")
_FP16_NAMES = frozenset({"float16", "half", "fp16"})


def _is_fp16(expr: ast.expr) -> bool:
    if isinstance(expr, ast.Attribute) and expr.attr in ("float16", "half") and ast.unparse(expr.value) == "torch":
        return True
    return isinstance(expr, ast.Constant) and isinstance(expr.value, str) and expr.value.lower() in _FP16_NAMES


def _value(source: SourceFile, expr: ast.expr, scope: ast.AST, line: int) -> ast.expr:
    """A name followed to its last assignment in the scope, else in the module."""
    found = pysource.resolve(expr, scope, line)
    if isinstance(found, ast.Name) and scope is not source.tree:
        found = pysource.resolve(found, source.tree, line)
    return found


def _fp16_choice(expr: ast.expr) -> bool:
    """float16, or a run-time choice with a float16 branch (`bf16 if is_bf16_supported() else float16`)."""
    if isinstance(expr, ast.IfExp):
        return _fp16_choice(expr.body) or _fp16_choice(expr.orelse)
    return _is_fp16(expr)


def _overflowing_family(source: SourceFile, call: ast.Call, scope: ast.AST) -> ServingFacts | None:
    """The family that overflows float16 whose model `call` loads, by the model name it is given."""
    if pysource.called_name(call) not in LOADERS:
        return None
    for expr in call.args[:1] + [kw.value for kw in call.keywords if kw.arg in MODEL_ARGS]:
        for family in sorted(family_names_in(_text(source, expr, scope, call.lineno))):
            facts = serving_facts(family)
            if facts is not None and facts.float16_overflows:
                return facts
    return None


def _text(source: SourceFile, expr: ast.expr, scope: ast.AST, line: int, depth: int = 0) -> str:
    """The string a model argument holds as far as it can be read: a literal, a name assigned one, an f-string of
    those (`f"{MODEL_DIR}/LLM"`); what cannot be read is left out. Names inside an assigned value are read as they
    were before that assignment (`x = f"{x}/LLM"` reads the earlier x)."""
    value = _value(source, expr, scope, line)
    if value is not expr:
        line = getattr(value, "lineno", line)
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    if isinstance(value, ast.Attribute):  # args.model_path: the option's default
        return option_defaults(source).get(value.attr, "")
    if isinstance(value, ast.JoinedStr) and depth < 8:
        return "".join(
            _text(source, part.value if isinstance(part, ast.FormattedValue) else part, scope, line, depth + 1)
            for part in value.values
        )
    return ""


class _Fp16Site(msgspec.Struct, frozen=True):
    node: ast.expr  # where it is asked for: the dtype argument, or the `.half()` call
    what: str  # "`torch_dtype=torch.float16`"
    family: ServingFacts
    dtype: ast.expr | None  # the dtype as written (None for `.half()`)
    value: ast.expr | None  # what it holds (a name followed to its assignment)


def _fp16_sites(source: SourceFile) -> Iterator[_Fp16Site]:
    """Where a family that overflows float16 is loaded or cast to it: `from_pretrained("SparkAudio/Spark-TTS-0.5B/LLM",
    torch_dtype=torch.float16)`, vLLM's `LLM(model=..., dtype="half")`, `.half()` / `.to(torch.float16)` on such a
    load or on a name assigned one; a dtype chosen at run time with a float16 branch too."""
    for site in pysource.calls(source, _LOAD_OR_CAST):
        call = site.node
        if site.name in ("half", "to") and isinstance(call.func, ast.Attribute):
            receiver = _value(source, call.func.value, site.scope, call.lineno)
            facts = _overflowing_family(source, receiver, site.scope) if isinstance(receiver, ast.Call) else None
            if facts is None:
                continue
            if site.name == "half" and not call.args:
                yield _Fp16Site(call, f"`{ast.unparse(call.func)}()`", facts, None, None)
            elif site.name == "to":
                for written in call.args[:1] + [kw.value for kw in call.keywords if kw.arg == "dtype"]:
                    value = _value(source, written, site.scope, call.lineno)
                    if _fp16_choice(value):
                        yield _Fp16Site(written, f"`.to({ast.unparse(written)})`", facts, written, value)
            continue
        facts = _overflowing_family(source, call, site.scope)
        if facts is None:
            continue
        for kw in call.keywords:
            if kw.arg not in ("torch_dtype", "dtype"):
                continue
            value = _value(source, kw.value, site.scope, call.lineno)
            if _fp16_choice(value):
                yield _Fp16Site(kw.value, f"`{kw.arg}={ast.unparse(kw.value)}`", facts, kw.value, value)


def _float32_fix(source: SourceFile, site: _Fp16Site) -> Fix:
    """float32 in place of the float16 asked for: the dtype literal, the float16 branch of a run-time choice, or
    `.half()` made `.float()`. Unsafe: float32 takes twice the memory."""
    edit: tuple[int, int, str] | None = None
    if site.dtype is None and isinstance(site.node, ast.Call) and isinstance(site.node.func, ast.Attribute):
        where = pysource.span(source, site.node.func)
        if where is not None and source.text[where[1] - 4 : where[1]] == "half":
            edit = (where[1] - 4, where[1], "float")
    else:
        value = site.value
        if isinstance(value, ast.IfExp):  # the float16 branch of `bfloat16 if is_bf16_supported() else float16`
            value = next((b for b in (value.body, value.orelse) if _is_fp16(b)), None)
        where = pysource.span(source, value) if value is not None and _is_fp16(value) else None
        if where is not None:
            written = source.text[where[0] : where[1]]
            quote = written[:1] if written[:1] in ("'", '"') else ""
            edit = (where[0], where[1], f"{quote}float32{quote}" if quote else "torch.float32")
    if edit is None:
        return Fix(
            "use torch.float32, or torch.bfloat16 where torch.cuda.is_bf16_supported()", Applicability.DISPLAY_ONLY
        )
    start, end, text = edit
    return Fix(
        f"Use {text} (float32 takes twice the memory of float16)",
        Applicability.UNSAFE,
        (ReplaceSource(source.path, start, end, text),),
    )


class Float16Overflow(Rule):
    id = "ENV003"
    name = "float16-overflow"
    summary = "A TTS family whose activations exceed float16's range is loaded or saved in float16"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.config is None or target.family is None:
            return
        facts = target.serving
        if facts is None or not facts.float16_overflows:
            return
        config = target.config
        assert config is not None
        for key in ("torch_dtype", "dtype"):
            if config.data.get(key) != "float16":
                continue
            line, column = config.position(f"/{key}")
            yield self.finding(
                f"{key} is float16, so dtype='auto' loads this {facts.family} model in float16, whose range its "
                f"activations exceed: the output is noise or silence, or sampling fails ({facts.float16_overflows})",
                config.path,
                f"/{key}",
                line,
                column,
                {"family": facts.family},
                Fix(
                    "load with dtype=torch.float32, or torch.bfloat16 on a GPU with compute capability 8.0 or more",
                    Applicability.DISPLAY_ONLY,
                ),
            )
            return

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not names_a_family(source) or not _FP16_TEXT.search(source.text):
            return
        for site in _fp16_sites(source):
            facts = site.family
            if isinstance(site.value, ast.IfExp):
                test = ast.unparse(site.value.test)
                by_gpu = "bf16" in test or "bfloat16" in test
                how = f"chooses float16 for {facts.family}" + (
                    " where the GPU has no bfloat16 (T4, V100)" if by_gpu else " in one branch"
                )
                if site.value is not site.dtype:
                    how += f" (`{ast.unparse(site.value)}`)"
            else:
                how = f"runs {facts.family} in float16"
            node = site.node
            fix = _float32_fix(source, site)
            yield self.finding(
                f"{site.what} at {source.line_name(node.lineno)} {how}, whose range its activations exceed: the "
                f"output is noise or silence, or sampling fails with a device-side assert ({facts.float16_overflows})."
                " Use torch.float32, or torch.bfloat16 where the GPU has it",
                source.path,
                line=node.lineno,
                column=node.col_offset + 1,
                evidence={"family": facts.family},
                fix=fix,
            )
