"""GEN: generation configs as transformers reads them, in config files and in source."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator

import msgspec

from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.checks import pyflow, pysource
from ttsdoctor.finding import (
    AddImport,
    Applicability,
    Edit,
    Finding,
    Fix,
    RemoveJsonKey,
    ReplaceSource,
    SetJsonValue,
    Severity,
)
from ttsdoctor.rule import Rule

# Text prefilters: the AST is only walked in files these match (most files of a large tree do not).
_GENCONFIG_TEXT = re.compile(r"generation_config\s*=|[\"']generation_config[\"']\s*:")
_GENERATE_TEXT = re.compile(r"\.generate\(")

# Keywords and keys whose dict a library passes on as from_pretrained(**...) keyword arguments: OuteTTS's
# additional_model_config (the OuteTTS report), pipeline(model_kwargs=...), TRL's model_init_kwargs.
_FORWARDED_TO_LOAD = ("additional_model_config", "model_kwargs", "model_init_kwargs")


def _forwarded_dicts(source: SourceFile) -> set[int]:
    """The dict expressions a file hands to a library as from_pretrained keyword arguments: the value of an
    `additional_model_config=` / `model_kwargs=` keyword or key, written there or through a name assigned one."""
    if not any(name in source.text for name in _FORWARDED_TO_LOAD):
        return set()
    named: dict[str, list[ast.expr]] = {}
    values: list[ast.expr] = []
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    named.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.keyword) and node.arg in _FORWARDED_TO_LOAD:
            values.append(node.value)
        elif isinstance(node, (ast.Dict, ast.Call)) and pysource.is_dict_expr(node):
            values += [value for key, value, _node in pysource.dict_items(node) if key in _FORWARDED_TO_LOAD]
    found: set[int] = set()
    for value in values:
        for expr in named.get(value.id, []) if isinstance(value, ast.Name) else [value]:
            if pysource.is_dict_expr(expr):
                found.add(id(expr))
    return found


GENERATION_KEYS = (
    "max_length",
    "min_length",
    "max_new_tokens",
    "min_new_tokens",
    "do_sample",
    "early_stopping",
    "num_beams",
    "num_beam_groups",
    "diversity_penalty",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "num_return_sequences",
    "bad_words_ids",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "remove_invalid_values",
    "return_dict_in_generate",
    "output_scores",
    "guidance_scale",
    "epsilon_cutoff",
    "eta_cutoff",
)
# What generate() uses for a key nobody sets: transformers 5's GenerationConfig._get_default_generation_params()
# (5.23), the same values transformers 4's GenerationConfig() held. Keys without a default there (max_new_tokens,
# min_p, guidance_scale, ...) default to None, which GEN003 never reports. tests/test_generation.py compares this
# table with the installed transformers.
GENERATE_DEFAULTS: dict[str, object] = {
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "remove_invalid_values": False,
    "return_dict_in_generate": False,
    "output_scores": False,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
}


def is_generate_default(key: str, value: object) -> bool:
    """The value generate() would use anyway (a bool only matches a bool: `0` is not `false`)."""
    if key not in GENERATE_DEFAULTS:
        return False
    default = GENERATE_DEFAULTS[key]
    return isinstance(value, bool) == isinstance(default, bool) and value == default


FORWARDING_KEYS = ("model_config", "model_kwargs", "from_pretrained", "load_kwargs", "additional", "init_kwargs")


def _generation_config_fix(source: SourceFile, expr: ast.expr) -> Fix | None:
    """Wrap a dict literal as GenerationConfig(**{...}), or rename dict(...) to GenerationConfig(...)."""
    found = pysource.span(source, expr)
    if found is None:
        return None
    start, end = found
    bound = _binding_of_generation_config(source)
    if bound is not None:  # a name of the project's own: importing transformers' would shadow it, or not take effect
        return Fix(
            f"Wrap the dict in transformers.GenerationConfig by hand: this module already binds GenerationConfig "
            f"({bound})",
            Applicability.DISPLAY_ONLY,
            (),
        )
    edits: list[Edit]
    if isinstance(expr, ast.Call):
        func = pysource.span(source, expr.func)
        if func is None:
            return None
        if expr.args:  # dict(base, k=v): GenerationConfig(base, k=v) would raise TypeError
            if len(expr.args) != 1 or isinstance(expr.args[0], ast.Starred):
                return None
            arg = pysource.span(source, expr.args[0])
            if arg is None:
                return None
            edits = [
                ReplaceSource(source.path, arg[0], arg[0], "**"),
                ReplaceSource(source.path, func[0], func[1], "GenerationConfig"),
            ]
        else:
            edits = [ReplaceSource(source.path, func[0], func[1], "GenerationConfig")]
    elif isinstance(expr, ast.Dict):
        edits = [
            ReplaceSource(source.path, end, end, ")"),
            ReplaceSource(source.path, start, start, "GenerationConfig(**"),
        ]
    else:
        return None
    edits.append(AddImport(source.path, "transformers", "GenerationConfig"))
    return Fix("Wrap the dict in transformers.GenerationConfig", Applicability.SAFE, tuple(edits))


def _binding_of_generation_config(source: SourceFile) -> str | None:
    """How the module binds the name GenerationConfig other than by importing it from transformers, if it does."""
    for node in ast.walk(source.tree):
        if isinstance(node, ast.ClassDef) and node.name == "GenerationConfig":
            return f"class GenerationConfig at {source.line_name(node.lineno)}"
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == "GenerationConfig" and not (node.module or "").startswith(
                    "transformers"
                ):
                    return f"imported from {node.module or '.'} at {source.line_name(node.lineno)}"
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "GenerationConfig" for t in node.targets
        ):
            return f"assigned at {source.line_name(node.lineno)}"
    return None


def _receiver_origin(source: SourceFile, site: pysource.CallSite) -> pyflow.Origin:
    """What `site`'s receiver is: the model of `model.generate(...)`, the class of `X.from_pretrained(...)`."""
    func = site.node.func
    if not isinstance(func, ast.Attribute):
        return pyflow.Origin(pyflow.UNKNOWN, f"{site.name} is called without a receiver")
    ctx = pyflow.Context(source, site.scope, site.node.lineno)
    if site.name == "from_pretrained":
        return pyflow.model_origin(site.node, ctx)
    return pyflow.model_origin(func.value, ctx)


def _traced_to_transformers(origin: pyflow.Origin) -> bool:
    """A receiver shown to be a transformers model: not one only named like one, nor one the module does not show."""
    return origin.certain and origin.kind == pyflow.HF


class DictGenerationConfig(Rule):
    id = "GEN001"
    name = "dict-generation-config"
    summary = "A plain dict where a transformers GenerationConfig is required"
    severity = Severity.ERROR

    def check_source(self, target: SourceFile) -> Iterator[Finding]:
        source: SourceFile = target
        if not pysource.mentions(source.text, "generation_config", _GENCONFIG_TEXT):
            return
        reported: set[int] = set()
        for site in pysource.calls(source, _GENCONFIG_TEXT, "generate", "from_pretrained"):
            kw = pysource.keyword(site.node, "generation_config")
            candidates: list[tuple[ast.expr, ast.AST]] = []
            if kw is not None:
                candidates.append((pysource.resolve(kw.value, site.scope, site.node.lineno), kw.value))
            elif site.name == "from_pretrained":
                for star in (k for k in site.node.keywords if k.arg is None):
                    forwarded = pysource.resolve(star.value, site.scope, site.node.lineno)
                    for key, value, _key_node in pysource.dict_items(forwarded):
                        if key == "generation_config":
                            candidates.append((pysource.resolve(value, site.scope, site.node.lineno), value))
            candidates = [(v, a) for v, a in candidates if pysource.is_dict_expr(v) and id(v) not in reported]
            if not candidates:
                continue
            reported.update(id(value) for value, _anchor in candidates)  # judged here, for this receiver only
            origin = _receiver_origin(source, site)
            if origin.kind == pyflow.OTHER:
                continue  # vLLM, a project's own model class: its generate() / from_pretrained() is not transformers'
            sure = _traced_to_transformers(origin)
            for value, anchor in candidates:
                whose = "" if sure else "transformers' "
                if site.name == "from_pretrained":
                    effect = (
                        "from_pretrained fails at load with AttributeError: 'dict' object has no attribute 'to_dict'"
                    )
                else:
                    effect = "generate() fails with AttributeError: 'dict' object has no attribute 'max_length'"
                message = f"{site.name}(generation_config=...) gets a dict: {whose}{effect}"
                if sure:
                    yield self._finding(source, value, anchor, message)
                    continue
                # VibeVoice's own generate() builds GenerationConfig(**generation_config): wrapping would break it
                message += f" ({origin.why}: if it defines its own {site.name}(), that may accept a dict)"
                yield self._finding(source, value, anchor, message, Severity.WARNING, Applicability.UNSAFE)
        forwarded_dicts = _forwarded_dicts(source)
        for node, scope, _loop in pysource.nodes(source, _GENCONFIG_TEXT):
            targets = [t for t in getattr(node, "targets", ()) if isinstance(t, ast.Attribute)]
            holder = next((t for t in targets if t.attr == "generation_config"), None)
            if isinstance(node, ast.Assign) and holder is not None:
                value = pysource.resolve(node.value, scope, node.lineno)
                if not pysource.is_dict_expr(value) or id(value) in reported:
                    continue
                origin = pyflow.model_origin(holder.value, pyflow.Context(source, scope, node.lineno))
                if origin.kind == pyflow.OTHER:
                    continue  # mlx-audio's own Model keeps its generation_config as a dict
                reported.add(id(value))
                message = (
                    f"{ast.unparse(holder)} is assigned a dict: accepted silently, then save_pretrained writes "
                    "config.json and fails ('dict' object has no attribute 'save_pretrained'), leaving a half-saved "
                    "directory"
                )
                if _traced_to_transformers(origin):
                    yield self._finding(source, value, node.value, message)
                else:
                    message += f" ({origin.why}: its own class may keep a dict there)"
                    yield self._finding(source, value, node.value, message, Severity.WARNING, Applicability.UNSAFE)
            elif isinstance(node, (ast.Dict, ast.Call)) and id(node) in forwarded_dicts:
                for key, written, _key_node in pysource.dict_items(node):
                    value = pysource.resolve(written, scope, getattr(node, "lineno", 0))
                    if key == "generation_config" and pysource.is_dict_expr(value) and id(value) not in reported:
                        reported.add(id(value))
                        yield self._finding(
                            source,
                            value,
                            written,
                            "a dict under 'generation_config' is forwarded as from_pretrained(**...) "
                            "keyword arguments: loading fails with AttributeError: 'dict' object has "
                            "no attribute 'to_dict'",
                        )

    def _finding(
        self,
        source: SourceFile,
        value: ast.expr,
        written: ast.AST,
        message: str,
        severity: Severity | None = None,
        applicability: Applicability | None = None,
    ) -> Finding:
        """`written` is the expression at the use site; a fix rewrites the dict only where it is written inline."""
        fix = _generation_config_fix(source, value) if written is value else None
        if fix is not None and applicability is not None and fix.applicability is Applicability.SAFE:
            fix = msgspec.structs.replace(fix, applicability=applicability)  # a display-only fix stays display-only
        return self.finding(
            message,
            source.path,
            line=getattr(written, "lineno", None),
            column=getattr(written, "col_offset", 0) + 1,
            fix=fix,
            severity=severity,
        )

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        for entry in target.find("generation_config"):
            if not isinstance(entry.value, dict):
                continue
            parents = entry.pointer.lower().split("/")[1:-1]
            if not any(hint in part for part in parents for hint in FORWARDING_KEYS):
                continue
            yield self.finding(
                f"{entry.pointer[1:]} is a mapping forwarded to from_pretrained(**...): transformers "
                "needs a GenerationConfig there ('dict' object has no attribute 'to_dict'); build one "
                "with GenerationConfig(**mapping) in the loader",
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                severity=Severity.WARNING,
            )


class GenerateWithoutAttentionMask(Rule):
    id = "GEN002"
    name = "generate-without-attention-mask"
    summary = "generate() called without an attention_mask"
    severity = Severity.WARNING

    def check_source(self, target: SourceFile) -> Iterator[Finding]:
        if not pysource.mentions(target.text, ".generate(", _GENERATE_TEXT):
            return
        for site in pysource.calls(target, _GENERATE_TEXT, "generate"):
            call = site.node
            if not isinstance(call.func, ast.Attribute) or pysource.keyword(call, "attention_mask") is not None:
                continue
            ctx = pyflow.Context(target, site.scope, call.lineno)
            prompt = call.args[0] if call.args else None
            for name in ("input_ids", "inputs"):
                kw = pysource.keyword(call, name)
                if kw is not None:
                    prompt = kw.value
            stars = [pyflow.mask_carrier(kw.value, ctx) for kw in call.keywords if kw.arg is None]
            if any(s.kind == pyflow.MASK for s in stars):
                continue
            if prompt is None:
                continue  # generate(**something) without a prompt of its own: nothing to judge
            receiver = pyflow.model_origin(call.func.value, ctx)
            if receiver.kind == pyflow.OTHER or (receiver.kind == pyflow.UNKNOWN and pyflow.text_api_call(call, ctx)):
                continue  # vLLM, llama.cpp, a TTS library's own generate(text, ...)
            shape = pyflow.prompt_shape(prompt, ctx)
            if shape.kind == pyflow.AUDIO:
                continue  # Whisper's log-mel input_features: no pad token to infer a mask from
            yield self._judge(target, call, receiver, shape, stars)

    def _judge(
        self,
        target: SourceFile,
        call: ast.Call,
        receiver: pyflow.Origin,
        shape: pyflow.Origin,
        stars: list[pyflow.Origin],
    ) -> Finding:
        unknown_stars = [s for s in stars if s.kind == pyflow.UNKNOWN]
        line, column = call.lineno, call.col_offset + 1
        evidence = {"receiver": receiver.why, "prompt": shape.why, "kwargs": [s.why for s in stars]}
        if receiver.kind == pyflow.HF and shape.kind == pyflow.BATCH and not unknown_stars:
            pad_eos = _pad_eos_for_call(target, call)
            if pad_eos is not None:
                return self.finding(
                    f"generate() on a padded batch ({shape.why}) without attention_mask while {pad_eos}: "
                    "transformers cannot infer the mask, so padded prompts attend to their padding and the output "
                    "changes with the batch",
                    target.path,
                    evidence=evidence,
                    severity=Severity.ERROR,
                    line=line,
                    column=column,
                )
            return self.finding(
                f"generate() on a padded batch ({shape.why}) without attention_mask: transformers infers the mask "
                "from the pad id, which fails silently when pad is unset or equals eos; pass the tokenizer's "
                "attention_mask",
                target.path,
                evidence=evidence,
                line=line,
                column=column,
            )
        if receiver.kind != pyflow.HF:
            why = f"the receiver is not traced to a transformers model ({receiver.why})"
        elif unknown_stars:
            why = f"{unknown_stars[0].why}"
        elif shape.kind == pyflow.SINGLE:
            why = f"{shape.why}: the output is right, but transformers warns when it cannot infer the mask"
        else:
            why = f"whether the prompt is a padded batch is not shown ({shape.why})"
        return self.finding(
            f"generate() without attention_mask ({why}); pass the tokenizer's attention_mask to be safe with "
            "padded batches",
            target.path,
            evidence=evidence,
            severity=Severity.INFO,
            line=line,
            column=column,
        )


def _pad_eos_for_call(target: SourceFile, call: ast.Call) -> str | None:
    """Why pad equals eos for this generate call, from the tree: the call passes pad_token_id=<eos>, or the module
    assigns pad = eos unconditionally."""
    kw = pysource.keyword(call, "pad_token_id")
    if kw is not None and pyflow.EOS_NAMES & {getattr(kw.value, "attr", None), getattr(kw.value, "id", None)}:
        return "the call passes pad_token_id=eos"
    for node, guarded in pyflow.pad_facts(target).pad_is_eos:
        if not guarded:
            return f"{target.line_name(node.lineno)} makes pad the eos token"
    return None


class GenerationKeysInConfig(Rule):
    id = "GEN003"
    name = "generation-keys-in-config"
    summary = "Generation settings (max_length, do_sample, temperature, ...) in config.json"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.config is None:
            return
        config = target.config
        assert config is not None
        # null sets nothing (SpeechT5 fine-tunes save "max_length": null): nothing is ignored or lost
        keys = [k for k in GENERATION_KEYS if config.data.get(k) is not None]
        if not keys:
            return
        gen = target.generation_config
        gen_path = gen.path if gen is not None else os.path.join(target.path, "generation_config.json")
        # transformers 4 saved every default of a composite config (GLM-ASR's max_length 20, num_beams 1): whether
        # config.json is read or ignored, generation runs with those values. One finding for all of them.
        defaults = [k for k in keys if (gen is None or k not in gen.data) and is_generate_default(k, config.data[k])]
        if defaults:
            shown = ", ".join(f"{k}={config.data[k]!r}" for k in defaults)
            yield self.finding(
                f"config.json sets {len(defaults)} generation key{'s' if len(defaults) > 1 else ''} to transformers' "
                f"defaults ({shown}), which generation uses whether or not it reads config.json: nothing changes, "
                "it is only untidy",
                config.path,
                f"/{defaults[0]}",
                *config.position(f"/{defaults[0]}"),
                {"keys": defaults},
                fix=Fix(
                    "Remove the default generation keys from config.json",
                    Applicability.SAFE,
                    tuple(RemoveJsonKey(config.path, f"/{k}") for k in defaults),
                ),
                severity=Severity.INFO,
            )
        for key in keys:
            if key in defaults:
                continue
            value = config.data[key]
            line, column = config.position(f"/{key}")
            severity = None
            if gen is not None:
                if key in gen.data and gen.data[key] == value:
                    severity = Severity.INFO  # a repeat: nothing is lost, no reader misled (transformers 4 saves)
                    fix = Fix(
                        f"Remove {key} from config.json (generation_config.json has the same value)",
                        Applicability.SAFE,
                        (RemoveJsonKey(config.path, f"/{key}"),),
                    )
                    note = f"generation_config.json has the same value ({gen.data[key]!r})"
                elif key in gen.data:
                    fix = Fix(
                        f"Remove {key} from config.json (generation_config.json sets {gen.data[key]!r})",
                        Applicability.SAFE,
                        (RemoveJsonKey(config.path, f"/{key}"),),
                    )
                    note = f"generation_config.json sets {gen.data[key]!r}, which wins"
                else:
                    fix = Fix(
                        f"Move {key} to generation_config.json",
                        Applicability.UNSAFE,
                        (SetJsonValue(gen_path, f"/{key}", value), RemoveJsonKey(config.path, f"/{key}")),
                    )
                    note = "generation uses the default instead"
                yield self.finding(
                    f"{key}={value!r} in config.json is ignored because generation_config.json exists: {note}",
                    config.path,
                    f"/{key}",
                    line,
                    column,
                    fix=fix,
                    severity=severity,
                )
            else:
                fix = Fix(
                    f"Move {key} to a new generation_config.json",
                    Applicability.SAFE,
                    (SetJsonValue(gen_path, f"/{key}", value), RemoveJsonKey(config.path, f"/{key}")),
                )
                # transformers builds the generation config from config.json while no generation_config.json
                # exists, and save_pretrained writes it there (transformers 5.23: tests/test_generation.py)
                yield self.finding(
                    f"{key}={value!r} belongs in generation_config.json: transformers uses it from config.json while "
                    "no generation_config.json exists (save_pretrained moves it there), but a generation_config.json "
                    "written any other way (copied from the base model, GenerationConfig.save_pretrained) leaves "
                    "it ignored without a word",
                    config.path,
                    f"/{key}",
                    line,
                    column,
                    fix=fix,
                    severity=Severity.INFO,
                )


SAMPLING_FLAGS = (
    ("temperature", 1.0),
    ("top_p", 1.0),
    ("top_k", 50),
    ("typical_p", 1.0),
    ("min_p", None),
    ("epsilon_cutoff", 0.0),
    ("eta_cutoff", 0.0),
)
BEAM_FLAGS = (("early_stopping", False), ("length_penalty", 1.0))


class InvalidGenerationConfig(Rule):
    id = "GEN004"
    name = "invalid-generation-config"
    summary = "generation_config.json values that transformers rejects or silently ignores"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.generation_config is None:
            return
        doc = target.generation_config
        assert doc is not None
        data = doc.data

        def num(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        def emit(key: str, message: str, severity: Severity, fix: Fix | None = None) -> Finding:
            line, column = doc.position(f"/{key}")
            return self.finding(
                message, doc.path, f"/{key}", line, column, {key: data.get(key)}, fix, severity=severity
            )

        sampling = data.get("do_sample") is True
        if not sampling:
            for key, default in SAMPLING_FLAGS:
                if key in data and data[key] is not None and data[key] != default:
                    yield emit(
                        key,
                        f"{key}={data[key]!r} without do_sample=true is ignored: decoding is greedy "
                        "(GenerationConfig.validate(strict=True) rejects it)",
                        Severity.WARNING,
                    )
        else:
            temperature = num("temperature")
            if temperature is not None and temperature <= 0:
                yield emit(
                    "temperature",
                    f"temperature={data['temperature']!r} with do_sample=true: generate() "
                    "raises ValueError (temperature has to be strictly positive); use "
                    "do_sample=false for greedy decoding",
                    Severity.ERROR,
                )
            top_k = num("top_k")
            if top_k is not None and top_k < 0:
                yield emit(
                    "top_k",
                    f"top_k={data['top_k']!r}: generate() raises ValueError (top_k has to be a "
                    "strictly positive integer, or 0 to disable)",
                    Severity.ERROR,
                )
        top_p = num("top_p")
        if top_p is not None and (top_p < 0 or top_p > 1):
            yield emit(
                "top_p", f"top_p={data['top_p']!r} is outside (0, 1]: generate() raises ValueError", Severity.ERROR
            )
        elif top_p == 0 and sampling:
            yield emit(
                "top_p", "top_p=0 keeps only the most likely token: sampling is greedy in disguise", Severity.WARNING
            )
        num_beams = data.get("num_beams")
        if num_beams in (None, 1):
            for key, default in BEAM_FLAGS:
                if key in data and data[key] is not None and data[key] != default:
                    yield emit(
                        key,
                        f"{key}={data[key]!r} with "
                        + ("num_beams unset (1)" if num_beams is None else f"num_beams={num_beams!r}")
                        + " is ignored: it only applies to "
                        "beam search (GenerationConfig.validate(strict=True) rejects it)",
                        Severity.WARNING,
                    )
            returns = num("num_return_sequences")
            if returns is not None and returns > 1 and not sampling:
                yield emit(
                    "num_return_sequences",
                    f"num_return_sequences={data['num_return_sequences']!r} with "
                    "greedy decoding: GenerationConfig raises ValueError",
                    Severity.ERROR,
                )
        for key in ("max_new_tokens", "max_length"):
            value = num(key)
            if value is not None and value <= 0:
                yield emit(
                    key,
                    f"{key}={data[key]!r} must be greater than 0: GenerationConfig raises ValueError",
                    Severity.ERROR,
                )
