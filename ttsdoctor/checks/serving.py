"""SRV: serving an LLM-based TTS model: length budgets, stop tokens, family sampling settings and GGUF metadata.

The figures (tokens per second of audio, end-of-speech tokens, required sampling) are data in data/codecs.json
("serving"), each with its source. A model folder's family comes from families.py; a source file's from the model
name it loads (from_pretrained, vLLM's LLM, llama.cpp's Llama: one family loaded, or nothing is said).
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.artifacts.jsonfile import JsonDoc
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.tokenizer import load_tokenizer_json
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.checks import pysource
from ttsdoctor.codecs import (
    PublishedIds,
    ServingFacts,
    family_of_omni_arch,
    family_of_omni_pipeline,
    published_ids,
    serving_facts,
)
from ttsdoctor.finding import Applicability, Finding, Fix, ReplaceSource, SetJsonValue, SetYamlValue, Severity
from ttsdoctor.rule import Rule

# transformers: generate() without max_new_tokens / max_length generates 20 new tokens
# (GenerationConfig._get_default_generation_params, generation/utils.py "by default let's always generate 20 new
# tokens"); vLLM: SamplingParams.max_tokens defaults to 16 (vllm/sampling_params.py).
TRANSFORMERS_DEFAULT_NEW_TOKENS = 20
VLLM_DEFAULT_MAX_TOKENS = 16
# Sub-configs generate() reads generation ids from (GenerationConfig.from_model_config)
DECODER_CONFIGS = ("decoder", "generator", "text_config")

# A model named in a string literal: "canopylabs/orpheus-3b-0.1-ft", "HKUSTAudio/Llasa-1B", ...
_FAMILY_IN_SOURCE = (
    (re.compile(r"orpheus", re.I), "Orpheus"),
    (re.compile(r"llasa", re.I), "Llasa"),
    (re.compile(r"outetts[-_ ]?1\.0|outetts-1b|llama-outetts-1", re.I), "OuteTTS 1.0"),
    (re.compile(r"outetts[-_ ]?0\.[23]", re.I), "OuteTTS 0.2/0.3"),
    (re.compile(r"spark-?tts", re.I), "Spark-TTS"),
    (re.compile(r"qwen3[-_]?tts(?![-_]?tokenizer)", re.I), "Qwen3-TTS"),  # not its speech tokenizer (a codec)
)
_MODEL_KEYS = re.compile(r"model", re.I)  # training-config keys naming the model: model_name_or_path, base_model
_CALLS_TEXT = re.compile(r"SamplingParams\s*\(|\.generate\s*\(")
_FAMILY_WORDS = ("orpheus", "llasa", "outetts", "sparktts", "spark-tts", "qwen3-tts", "qwen3_tts", "qwen3tts")


# Calls that load the model a file generates with, and the arguments naming it
LOADERS = ("from_pretrained", "LLM", "EngineArgs", "AsyncEngineArgs", "Llama", "pipeline")
MODEL_ARGS = ("model", "model_name", "model_id", "pretrained_model_name_or_path", "model_path", "repo_id")


def loaded_models(source: SourceFile) -> list[str]:
    """The strings a file passes as the model to load (directly, or through a variable assigned a string); one walk
    of the tree per file, shared by the rules that ask."""
    return _loads(source)[0]


def loaded_model_defaults(source: SourceFile) -> list[str]:
    """The defaults of the options a file passes as the model to load: `from_pretrained(args.model_path)` with
    `parser.add_argument("--model_path", default="./orpheus-ft")`, a dataclass field's `field(default=...)`, or an
    environment variable's (`os.environ.get("MODEL_ID", "openai/gpt-oss-20b")`). What runs when no option is given,
    which a user may change on the command line or in the environment."""
    return _loads(source)[1]


def _loads(source: SourceFile) -> tuple[list[str], list[str]]:
    cached: tuple[list[str], list[str]] | None = source.cache.get("loaded_models")
    if cached is not None:
        return cached
    strings: dict[str, list[str]] = {}
    env_defaults: dict[str, list[str]] = {}  # MODEL_ID = os.environ.get("MODEL_ID", "openai/gpt-oss-20b")
    loads: list[ast.expr] = []
    if not any(name in source.text for name in LOADERS):
        source.cache["loaded_models"] = ([], [])
        return [], []  # no loader named: nothing to walk for
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Assign):
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                names, text = strings, value.value
            elif (default := pysource.env_default(value)) is not None:
                names, text = env_defaults, default
            else:
                continue
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, []).append(text)
        elif isinstance(node, ast.Call) and pysource.called_name(node) in LOADERS:
            loads += node.args[:1] + [kw.value for kw in node.keywords if kw.arg in MODEL_ARGS]
    out: list[str] = []
    defaults: list[str] = []
    for expr in loads:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            out.append(expr.value)
        elif isinstance(expr, ast.Name):
            out += strings.get(expr.id, [])
            defaults += env_defaults.get(expr.id, [])
        else:
            default = (
                option_defaults(source).get(expr.attr)
                if isinstance(expr, ast.Attribute)
                else pysource.env_default(expr)
            )
            if default is not None:
                defaults.append(default)
    source.cache["loaded_models"] = (out, defaults)
    return out, defaults


def option_defaults(source: SourceFile) -> dict[str, str]:
    """String defaults of a file's options, by the attribute they are read as: argparse's `add_argument("--model-path",
    default="x")` (args.model_path, or its dest=) and dataclass fields (`model_name_or_path: str = field(default="x")`
    or `= "x"` in a @dataclass). A name defined twice with different defaults is left out."""
    cached: dict[str, str] | None = source.cache.get("option_defaults")
    if cached is not None:
        return cached
    found: dict[str, set[str]] = {}
    if "add_argument" in source.text or "dataclass" in source.text:
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Call) and pysource.called_name(node) == "add_argument":
                kw = pysource.keyword(node, "default")
                default = kw.value.value if kw is not None and isinstance(kw.value, ast.Constant) else None
                dest = _option_dest(node)
                if dest and isinstance(default, str):
                    found.setdefault(dest, set()).add(default)
            elif isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                        value = item.value
                        if isinstance(value, ast.Call) and pysource.called_name(value) == "field":
                            kw = pysource.keyword(value, "default")
                            value = kw.value if kw is not None else value
                        if isinstance(value, ast.Constant) and isinstance(value.value, str):
                            found.setdefault(item.target.id, set()).add(value.value)
    result = {name: values.pop() for name, values in found.items() if len(values) == 1}
    source.cache["option_defaults"] = result
    return result


def _option_dest(call: ast.Call) -> str | None:
    """The attribute argparse stores an option in: dest=, else the first long option, else the positional name."""
    dest = pysource.keyword(call, "dest")
    if dest is not None:
        return dest.value.value if isinstance(dest.value, ast.Constant) and isinstance(dest.value.value, str) else None
    names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    chosen = next((n for n in names if n.startswith("--")), names[0] if names else None)
    return chosen.lstrip("-").replace("-", "_") if chosen else None


def family_names_in(model: str) -> set[str]:
    """The TTS families a model name names ("canopylabs/orpheus-3b-0.1-ft": Orpheus)."""
    return {family for pattern, family in _FAMILY_IN_SOURCE if pattern.search(model)}


def names_a_family(source: SourceFile) -> bool:
    """Whether the text spells a TTS family's name anywhere: a model name the rules could read (a literal, an
    f-string's parts, an option's default) is spelled in the text, so without one they have nothing to read."""
    return source.mentions_any_case(*_FAMILY_WORDS)


def source_family(source: SourceFile) -> ServingFacts | None:
    """The serving facts of the one TTS family whose model the file loads (None for none or several): a
    string naming it passed to from_pretrained / LLM / Llama, not a model merely listed in the file."""
    if "source_family" in source.cache:
        found: ServingFacts | None = source.cache["source_family"]
        return found
    named: set[str] = set()
    if names_a_family(source):  # the models loaded by name, else by an option's default
        for models in (loaded_models(source), loaded_model_defaults(source)):
            named = {family for model in models for family in family_names_in(model)}
            if named:
                break
    facts = serving_facts(named.pop()) if len(named) == 1 else None
    source.cache["source_family"] = facts
    return facts


def config_family(config: TrainingConfig) -> ServingFacts | None:
    """The serving facts of a training config's family: detected from its keys, or the one TTS family its model
    entries (model_name_or_path: canopylabs/orpheus-3b-0.1-pretrained) name."""
    if config.family is not None:
        return serving_facts(config.family.name)
    named = {family for model in config_models(config) for family in family_names_in(model)}
    return serving_facts(named.pop()) if len(named) == 1 else None


def config_models(config: TrainingConfig) -> list[str]:
    """The strings a training config gives under keys naming a model (model_name_or_path, base_model, ...)."""
    return [entry.value for entry in config.entries if isinstance(entry.value, str) and _MODEL_KEYS.search(entry.key)]


def _family_calls(source: SourceFile) -> tuple[ServingFacts | None, list[pysource.CallSite]]:
    """The family whose model a file loads and its generate() / SamplingParams() calls (both rules ask)."""
    if not pysource.mentions(source.text, ("generate", "SamplingParams"), _CALLS_TEXT):
        return None, []
    facts = source_family(source)
    if facts is None:
        return None, []
    return facts, list(pysource.calls(source, _CALLS_TEXT, "SamplingParams", "generate"))


class OmniStage(msgspec.Struct, frozen=True):
    """A stage of a vLLM-Omni stage config (`stage_args[i]`, or `stages[i]` of a deploy YAML naming a `pipeline:`)
    that runs a known family's speech-token LM autoregressively; vLLM-Omni builds that stage's SamplingParams from
    its `default_sampling_params`."""

    pointer: str  # /stage_args/0, /stages/0
    stage_id: Any
    arch: str  # the model_arch, or `pipeline cosyvoice3`
    facts: ServingFacts
    params: dict[str, Any] | None  # default_sampling_params, None when the stage has none
    anchor: str = ""  # where a finding about the stage points: its model_arch, or its stage_id


_AR_CLASSES = ("GPUARWorker", "OmniARScheduler")


def omni_speech_stages(config: TrainingConfig) -> list[OmniStage]:
    """The autoregressive stages of a vLLM-Omni stage config whose model_arch is a family's speech-token LM."""
    data = config.data
    if isinstance(data, dict) and isinstance(data.get("pipeline"), str) and isinstance(data.get("stages"), list):
        return _deploy_speech_stages(data["pipeline"], data["stages"])
    stages = data.get("stage_args") if isinstance(data, dict) else None
    if not isinstance(stages, list):
        return []
    out = []
    for index, stage in enumerate(stages):
        engine = stage.get("engine_args") if isinstance(stage, dict) else None
        if not isinstance(engine, dict) or not isinstance(engine.get("model_arch"), str):
            continue
        classes = {str(engine.get(key, "")).rsplit(".", 1)[-1] for key in ("worker_cls", "scheduler_cls")}
        if engine.get("worker_type") != "ar" and not classes.intersection(_AR_CLASSES):
            continue  # a generation stage (flow matching, a vocoder): its max_tokens is not audio length
        facts = family_of_omni_arch(engine["model_arch"])
        if facts is None:
            continue
        params = stage.get("default_sampling_params")
        out.append(
            OmniStage(
                f"/stage_args/{index}",
                stage.get("stage_id", index),
                engine["model_arch"],
                facts,
                dict(params) if isinstance(params, dict) else None,
                f"/stage_args/{index}/engine_args/model_arch",
            )
        )
    return out


def _deploy_speech_stages(pipeline: str, stages: list[Any]) -> list[OmniStage]:
    """vLLM-Omni's later deploy YAMLs (`pipeline: cosyvoice3` and `stages:`): the pipeline, defined in vLLM-Omni's
    code, says which stage is the speech-token LM; the YAML gives that stage's default_sampling_params."""
    known = family_of_omni_pipeline(pipeline)
    if known is None:
        return []
    facts, lm_stage = known
    out = []
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict) or stage.get("stage_id", index) != lm_stage:
            continue
        params = stage.get("default_sampling_params")
        out.append(
            OmniStage(
                f"/stages/{index}",
                lm_stage,
                f"pipeline {pipeline}",
                facts,
                dict(params) if isinstance(params, dict) else None,
                f"/stages/{index}/stage_id" if "stage_id" in stage else f"/stages/{index}",
            )
        )
    return out


def _entry(config: TrainingConfig, pointer: str) -> tuple[int | None, int | None]:
    for entry in config.entries:
        if entry.pointer == pointer:
            return entry.line, entry.column
    return None, None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _literal(site: pysource.CallSite, name: str) -> tuple[ast.keyword, Any] | None:
    """A keyword argument whose value is a constant (directly or through a name assigned one in the scope)."""
    kw = pysource.keyword(site.node, name)
    if kw is None:
        return None
    value = pysource.resolve(kw.value, site.scope, site.node.lineno)
    if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub) and isinstance(value.operand, ast.Constant):
        return kw, -value.operand.value if isinstance(value.operand.value, (int, float)) else None
    if isinstance(value, ast.Constant):
        return kw, value.value
    return None


def _seconds(tokens: int, facts: ServingFacts) -> str:
    seconds = facts.seconds(tokens) or 0.0
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"


def _rate(facts: ServingFacts) -> str:
    return f"{facts.tokens_per_second:g} tokens per second of audio for {facts.family} ({facts.rate_source})"


class AudioLengthBudget(Rule):
    id = "SRV001"
    name = "audio-length-budget"
    summary = (
        "A generation budget that cuts the audio: max_new_tokens (or the default) below the seconds the family needs"
    )
    severity = Severity.WARNING
    options: ClassVar[dict[str, tuple[type, Any]]] = {"min-seconds": (float, 10.0), "seconds": (float, 30.0)}

    def _budget_fix(self, gen: JsonDoc | None, facts: ServingFacts, applied: bool) -> tuple[int, Fix]:
        """The fix setting max_new_tokens for `seconds` of audio; only shown without a generation_config.json or
        when `applied` is false (no budget set is a choice left to the calling code)."""
        tokens = math.ceil(self.seconds * (facts.tokens_per_second or 0))
        title = f"Set max_new_tokens to {tokens} ({self.seconds:g} s of audio at {facts.tokens_per_second:g} tokens/s)"
        if gen is None:
            return tokens, Fix(
                f"{title} in a generation_config.json, or pass it to generate()", Applicability.DISPLAY_ONLY
            )
        if not applied:
            return tokens, Fix(title, Applicability.DISPLAY_ONLY)
        return tokens, Fix(title, Applicability.SAFE, (SetJsonValue(gen.path, "/max_new_tokens", tokens),))

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        facts = target.serving
        if facts is None or not facts.tokens_per_second or target.gguf_metadata is not None:
            return
        gen = target.generation_config
        data = gen.data if gen is not None and isinstance(gen.data, dict) else {}
        new, length = _int(data.get("max_new_tokens")), _int(data.get("max_length"))
        if new is not None:
            budget, key, what = new, "max_new_tokens", f"max_new_tokens {new}"
        elif length is not None:
            budget, key, what = length, "max_length", f"max_length {length} (prompt included)"
        else:
            budget, key, what = TRANSFORMERS_DEFAULT_NEW_TOKENS, None, "no max_new_tokens or max_length"
        seconds = facts.seconds(budget) or 0.0
        if seconds >= self.min_seconds:
            return
        tokens, fix = self._budget_fix(gen, facts, applied=key is not None)
        evidence = {"budget_tokens": budget, "seconds": round(seconds, 2), "tokens_per_second": facts.tokens_per_second}
        where = gen.path if gen is not None else target.path
        if key is None:
            yield self.finding(
                f"{where} sets {what}: generate() called without max_new_tokens stops after "
                f"{TRANSFORMERS_DEFAULT_NEW_TOKENS} new tokens, {_seconds(budget, facts)} of audio at {_rate(facts)}",
                where,
                evidence=evidence,
                fix=fix,
                severity=Severity.INFO,
            )
            return
        assert gen is not None
        yield self.finding(
            f"{what} in {gen.path} allows at most {_seconds(budget, facts)} of audio at {_rate(facts)}: longer "
            f"sentences are cut off mid-word (below the {self.min_seconds:g} s this rule expects; {tokens} tokens "
            f"give {self.seconds:g} s)",
            gen.path,
            f"/{key}",
            *gen.position(f"/{key}"),
            evidence=evidence,
            fix=fix,
        )

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        for stage in omni_speech_stages(config):
            facts = stage.facts
            if not facts.tokens_per_second:
                continue
            tokens = math.ceil(self.seconds * facts.tokens_per_second)
            what = f"stage {stage.stage_id} ({stage.arch}, the {facts.family} speech-token LM)"
            if stage.params is None or "max_tokens" not in stage.params:
                budget = VLLM_DEFAULT_MAX_TOKENS
                pointer = stage.anchor
                yield self.finding(
                    f"{what} sets no max_tokens in default_sampling_params: vLLM-Omni builds the stage's "
                    f"SamplingParams from them, and vLLM's default of {budget} tokens is "
                    f"{_seconds(budget, facts)} of audio at {_rate(facts)}",
                    config.path,
                    pointer,
                    *_entry(config, pointer),
                    evidence={"budget_tokens": budget, "tokens_per_second": facts.tokens_per_second},
                    fix=Fix(
                        f"Add `max_tokens: {tokens}` ({self.seconds:g} s of audio) under `default_sampling_params:` "
                        f"of stage {stage.stage_id}",
                        Applicability.DISPLAY_ONLY,
                    ),
                )
                continue
            budget_value = _int(stage.params["max_tokens"])
            if budget_value is None or budget_value <= 0:
                continue  # null: no limit but the model length
            seconds = facts.seconds(budget_value) or 0.0
            if seconds >= self.min_seconds:
                continue
            pointer = f"{stage.pointer}/default_sampling_params/max_tokens"
            edit: Any = (SetYamlValue if config.format == "yaml" else SetJsonValue)(config.path, pointer, tokens)
            yield self.finding(
                f"max_tokens {budget_value} of {what} allows at most {_seconds(budget_value, facts)} of audio at "
                f"{_rate(facts)}: longer sentences are cut off (below the {self.min_seconds:g} s this rule expects; "
                f"{tokens} tokens give {self.seconds:g} s)",
                config.path,
                pointer,
                *_entry(config, pointer),
                evidence={"budget_tokens": budget_value, "seconds": round(seconds, 2)},
                fix=Fix(
                    f"Set max_tokens to {tokens} ({self.seconds:g} s of audio at {facts.tokens_per_second:g} tokens/s)",
                    Applicability.SAFE,
                    (edit,),
                ),
            )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        facts, sites = _family_calls(source)
        if facts is None or not facts.tokens_per_second:
            return
        for site in sites:
            key = "max_tokens" if site.name == "SamplingParams" else "max_new_tokens"
            found = _literal(site, key)
            if found is None and site.name == "SamplingParams":
                if pysource.keyword(site.node, key) is not None or pysource.has_star_kwargs(site.node):
                    continue
                if "max_tokens" in source.text:  # set later (params.max_tokens = ...) or passed elsewhere
                    continue
                yield self.finding(
                    f"SamplingParams(...) at {source.line_name(site.node.lineno)} sets no max_tokens: vLLM's default "
                    f"is {VLLM_DEFAULT_MAX_TOKENS} tokens, {_seconds(VLLM_DEFAULT_MAX_TOKENS, facts)} of audio at "
                    f"{_rate(facts)}",
                    source.path,
                    line=site.node.lineno,
                    column=site.node.col_offset + 1,
                    evidence={"budget_tokens": VLLM_DEFAULT_MAX_TOKENS, "tokens_per_second": facts.tokens_per_second},
                )
                continue
            if found is None:
                continue
            kw, value = found
            budget = _int(value)
            if budget is None or budget <= 0:
                continue
            seconds = facts.seconds(budget) or 0.0
            if seconds >= self.min_seconds:
                continue
            wanted = f"{math.ceil(self.seconds * facts.tokens_per_second)} tokens give {self.seconds:g} s"
            where = f"{key}={budget} at {source.line_name(kw.value.lineno)}"
            smoke_test = seconds < 1.0  # written on purpose and too short for any word: a text smoke test, not speech
            yield self.finding(
                f"{where} is {_seconds(budget, facts)} of audio at {_rate(facts)}, too short for any sentence: this "
                "call most likely generates text (a smoke test of the language model); if it generates speech, "
                f"{wanted}"
                if smoke_test
                else f"{where} allows at most {_seconds(budget, facts)} of audio at {_rate(facts)}: longer sentences "
                f"are cut off (below the {self.min_seconds:g} s this rule expects; {wanted})",
                source.path,
                line=kw.value.lineno,
                column=kw.value.col_offset + 1,
                evidence={"budget_tokens": budget, "seconds": round(seconds, 2)},
                severity=Severity.INFO if smoke_test else None,
            )


class _Stops(msgspec.Struct, frozen=True):
    ids: tuple[int, ...]
    where: str  # "generation_config.json", "config.json", "GGUF metadata"


def _stop_ids(model: ModelDir) -> _Stops:
    """The ids that end generate() when the calling code passes none, from the folder's declared special ids: the
    generation config's eos when there is a generation_config.json (transformers then never reads config.json's:
    checked on 5.23, a generation_config.json without eos leaves model.generation_config.eos_token_id None), else
    the model config's (top level and the decoder sub-config transformers reads); for a GGUF, its eos and eot."""
    eos = [d for d in model.special_decls if d.role == "eos"]
    meta = model.gguf_metadata
    if meta is not None:
        eot = _int(meta.get("tokenizer.ggml.eot_token_id"))
        gguf_ids = tuple(i for d in eos for i in d.ids) + ((eot,) if eot is not None else ())
        return _Stops(gguf_ids, "the GGUF metadata (tokenizer.ggml.eos_token_id / eot_token_id)")
    doc, name = (model.generation_config, "generation_config.json")
    if doc is None:
        doc, name = (model.config, "config.json")
    if doc is None:
        return _Stops((), "nowhere")
    ids = (i for d in eos if d.path == doc.path and d.scope in ("", *DECODER_CONFIGS) for i in d.ids)
    return _Stops(tuple(dict.fromkeys(ids)), name)


def _nested_eos(model: ModelDir) -> tuple[str, int] | None:
    """An eos_token_id kept only in a sub-config generate() does not read (CosyVoice3's `llm`). Not for a model whose
    own code builds it (auto_map): InfiMM-Zephyr builds its language model from `language` and generates with it,
    so that sub-config's eos is the one read."""
    config = model.config
    if config is None or not isinstance(config.data, dict) or config.data.get("is_encoder_decoder") is True:
        return None
    if "auto_map" in config.data:
        return None
    for d in model.special_decls:
        nested = d.scope and "." not in d.scope and d.scope not in DECODER_CONFIGS and not d.scope.endswith("_config")
        if d.role == "eos" and d.path == config.path and nested and len(d.ids) == 1:
            return d.pointer, d.ids[0]
    return None


# Where code passes the ids generation stops on: vLLM's SamplingParams(stop_token_ids=...) (vLLM also stops on the
# model's own eos unless ignore_eos) and transformers' generate(eos_token_id=...) (replaces the generation config's)
_STOP_KEYS = {"SamplingParams": "stop_token_ids", "generate": "eos_token_id"}
_STOP_TEXT = re.compile(r"stop_token_ids|eos_token_id")


class _Layout(msgspec.Struct, frozen=True):
    """The published token layout a generation call's prompt follows, and one of its ids as evidence."""

    facts: ServingFacts
    table: PublishedIds
    speech_end: int
    witness: int  # an id the family added to its base tokenizer, in the code that builds the call's prompt
    witness_line: int


def _file_family(source: SourceFile) -> tuple[ServingFacts, PublishedIds, int] | None:
    """The family whose published ids a file may hard-code: the family of the model it loads, else the one family its
    text names (orpheus-speech's engine loads `self.model_name`); with its table and end-of-speech id."""
    facts = source_family(source)
    if facts is None:
        named = {family for pattern, family in _FAMILY_IN_SOURCE if pattern.search(source.text)}
        facts = serving_facts(named.pop()) if len(named) == 1 else None
    table = published_ids(facts.family) if facts is not None else None
    speech_end = table.end_of_speech(facts.end_of_speech) if facts is not None and table is not None else None
    if facts is None or table is None or speech_end is None:
        return None
    return facts, table, speech_end


def _call_layout(
    source: SourceFile, site: pysource.CallSite, family: tuple[ServingFacts, PublishedIds, int]
) -> _Layout | None:
    """The family layout of the prompt a generation call runs: an id the family added to its base tokenizer (Orpheus
    128259 `<custom_token_3>`) written in the call's own function, in a module constant it reads, or in a function of
    the file it calls (`self._format_prompt(...)`). Without one the call may generate with another model (a chat LLM
    next to the TTS model) or another layout (Orpheus's 135M models end speech at 49158), and nothing is said."""
    facts, table, speech_end = family

    def added_id(node: ast.AST) -> tuple[int, int, int] | None:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            node = pysource.assigned_value(source.tree, node.id, 1 << 30) or node
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= table.first_added and value in table.ids:
            return value, getattr(node, "lineno", 0), getattr(node, "col_offset", 0)
        return None

    def first_added(scope: ast.AST) -> tuple[int, int] | None:
        found = [f for node in pysource.own_nodes(scope) if (f := added_id(node)) is not None]
        first = min(found, key=lambda f: (f[1], f[2])) if found else None
        return (first[0], first[1]) if first is not None else None

    found = first_added(site.scope)
    if found is None:
        called = {pysource.called_name(n) for n in pysource.own_nodes(site.scope) if isinstance(n, ast.Call)}
        functions = (
            n
            for n in ast.walk(source.tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name in called and n is not site.scope
        )
        found = next((f for fn in functions if (f := first_added(fn)) is not None), None)
    return _Layout(facts, table, speech_end, *found) if found is not None else None


class _StopList(msgspec.Struct, frozen=True):
    kw: ast.keyword  # the call's argument
    node: ast.expr  # the literal holding the ids: in the call, an assignment, or a parameter's default
    ids: tuple[int, ...]
    how: str  # "" when written in the call, else where the value comes from
    editable: bool  # the literal serves this call only: adding an id to it changes nothing else


def _stop_list(source: SourceFile, site: pysource.CallSite, key: str) -> _StopList | None:
    """The literal ids a call passes as `key`: written in the call, through a name assigned them, or the default of
    the enclosing function's parameter the call passes on. None when any id is not a literal."""
    kw = pysource.keyword(site.node, key)
    if kw is None:
        return None
    line = site.node.lineno
    value, how, editable = pysource.resolve(kw.value, site.scope, line), "", True
    if isinstance(kw.value, ast.Name):
        name = kw.value.id
        default = pysource.parameter_default(site.scope, name) if value is kw.value else None
        if default is not None:
            value = default
            how = (
                f"the default of {getattr(site.scope, 'name', '')}()'s parameter at {source.line_name(default.lineno)}"
            )
            uses = sum(isinstance(n, ast.Name) and n.id == name for n in ast.walk(site.scope))
            editable = uses == 1  # the call's argument is the one use (the parameter itself is an ast.arg)
        else:
            value = value if value is not kw.value else pysource.resolve(kw.value, source.tree, line)
            how, editable = f"assigned at {source.line_name(value.lineno)}", False  # the name may serve elsewhere
    elements = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
    ids = [pysource.int_value(source, e, site.scope, line) for e in elements]
    if (value is kw.value and isinstance(value, ast.Name)) or not ids or any(i is None for i in ids):
        return None
    editable = editable and isinstance(value, (ast.List, ast.Tuple, ast.Constant))
    return _StopList(kw, value, tuple(i for i in ids if i is not None), how, editable)


class EndOfSpeechNotAStop(Rule):
    id = "SRV002"
    name = "end-of-speech-not-a-stop"
    summary = "The end-of-speech token (or a nested eos) is not among the ids that stop generation"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        stops = _stop_ids(target)
        if target.config is not None and not stops.ids:
            nested = _nested_eos(target)
            if nested is not None:
                nested_pointer, eos = nested
                config = target.config
                yield self.finding(
                    f"eos_token_id {eos} is only in {nested_pointer} of {config.path}, and {stops.where} set "
                    "none at the level generate() and vLLM read: generation never stops by itself and runs to the "
                    "length budget (CosyVoice3 served by vLLM: 76 s of audio for a short sentence)",
                    config.path,
                    nested_pointer,
                    *config.position(nested_pointer),
                    evidence={"nested": nested_pointer, "eos_token_id": eos},
                    fix=Fix(
                        f"Set eos_token_id to {eos} at the top level of config.json",
                        Applicability.SAFE,
                        (SetJsonValue(config.path, "/eos_token_id", eos),),
                    ),
                )
                return
        facts = target.serving
        tok = target.tokenizer.file if target.tokenizer is not None else None
        if facts is None or facts.end_of_speech is None or tok is None:
            return
        speech_end = tok.token_id(facts.end_of_speech)
        if speech_end is None or speech_end in stops.ids or not (stops.ids or target.config is not None):
            return
        merged = [*stops.ids, speech_end]
        gen = target.generation_config
        path = target.path
        pointer: str | None = None
        line = column = None
        if target.gguf_metadata is not None:
            fix = Fix(
                f"Pass {speech_end} as a stop id to the server, or run llama.cpp with "
                f"--override-kv tokenizer.ggml.eos_token_id=int:{speech_end}",
                Applicability.DISPLAY_ONLY,
            )
        else:  # generation_config.json, or config.json when there is none (generate() builds its config from it)
            doc = gen if gen is not None else target.config
            assert doc is not None
            path, pointer = doc.path, "/eos_token_id"
            line, column = doc.position(pointer)
            fix = Fix(
                f"Add {speech_end} to eos_token_id in {os.path.basename(doc.path)} ({merged})",
                Applicability.SAFE,
                (SetJsonValue(doc.path, pointer, merged),),
            )
        yield self.finding(
            f"{facts.family} ends speech with {facts.end_of_speech} (id {speech_end}), but the ids that stop "
            f"generation in {stops.where} are {list(stops.ids) or 'none'}: generate() or a server keeps producing "
            f"tokens after the speech ends, until the length budget ({facts.end_of_speech_source})",
            path,
            pointer,
            line,
            column,
            evidence={"end_of_speech": speech_end, "stop_ids": list(stops.ids)},
            fix=fix,
        )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not _STOP_TEXT.search(source.text) or not pysource.mentions(
            source.text, ("generate", "SamplingParams"), _CALLS_TEXT
        ):
            return
        family: tuple[ServingFacts, PublishedIds, int] | None = None
        for site in pysource.calls(source, _CALLS_TEXT, *_STOP_KEYS):
            key = _STOP_KEYS[site.name]
            stops = _stop_list(source, site, key)
            if stops is None:
                continue
            family = family or _file_family(source)  # once per file, and only when a call passes literal ids
            if family is None:
                return
            layout = _call_layout(source, site, family)
            if layout is None:
                continue
            if layout.speech_end in stops.ids or any(i >= layout.table.first_added for i in stops.ids):
                continue  # the end of speech, or a marker the family added (128262 follows 128258): chosen on purpose
            yield self._source_finding(source, site, key, stops, layout)

    def _source_finding(
        self, source: SourceFile, site: pysource.CallSite, key: str, stops: _StopList, layout: _Layout
    ) -> Finding:
        facts, speech_end, table = layout.facts, layout.speech_end, layout.table
        ids = list(stops.ids)
        merged = [*ids, speech_end]
        literal = ast.unparse(stops.node)
        written = ast.unparse(stops.kw.value)
        where = f"{key}={written}" + (f" ({literal}, {stops.how})" if stops.how else "")
        named = "; ".join(
            f"{i} is {table.ids[i]!r} there" if i in table.ids else f"{i} is a text token of its base" for i in ids
        )
        stop_on = (
            "vLLM stops only on these ids and the model's own eos"
            if site.name == "SamplingParams"
            else "generate() stops only on these ids"
        )
        span = pysource.span(source, stops.node)
        change = f"Add {speech_end} ({facts.end_of_speech}) to {key}: {merged}"
        fix = (
            Fix(change, Applicability.SAFE, (ReplaceSource(source.path, span[0], span[1], str(merged)),))
            if stops.editable and span is not None
            else Fix(f"{change} (written where only this call uses it)", Applicability.DISPLAY_ONLY)
        )
        value = stops.kw.value
        return self.finding(
            f"{where} at {source.line_name(value.lineno)} does not hold {facts.family}'s end of speech "
            f"{facts.end_of_speech}, id {speech_end} in the published {facts.family} tokenizer whose ids this file "
            f"hard-codes ({layout.witness} at {source.line_name(layout.witness_line)}; {named}): {stop_on}, "
            f"so generation runs on after the speech ends, until the length budget ({facts.end_of_speech_source})",
            source.path,
            line=value.lineno,
            column=value.col_offset + 1,
            evidence={"stop_ids": ids, "end_of_speech": speech_end, "witness": layout.witness},
            fix=fix,
        )


class FamilySampling(Rule):
    id = "SRV003"
    name = "family-sampling"
    summary = "Sampling settings a family documents as required: repetition_penalty floor, sampling instead of greedy"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        facts = target.serving
        gen = target.generation_config
        if facts is None or gen is None or not isinstance(gen.data, dict):
            return
        penalty = _number(gen.data.get("repetition_penalty"))
        floor = facts.min_repetition_penalty
        if penalty is not None and floor is not None and penalty < floor:
            yield self.finding(
                f"repetition_penalty {penalty:g} in {gen.path} is below the {floor:g} {facts.family} requires "
                f"({facts.sampling_source}): generations loop or stall",
                gen.path,
                "/repetition_penalty",
                *gen.position("/repetition_penalty"),
                evidence={"repetition_penalty": penalty, "required": floor},
                fix=Fix(
                    f"Set repetition_penalty to {floor:g}",
                    Applicability.SAFE,
                    (SetJsonValue(gen.path, "/repetition_penalty", floor),),
                ),
            )
        greedy = _greedy(gen.data.get("do_sample"), gen.data.get("top_k"), None)
        if facts.needs_sampling and greedy is not None:
            key = "do_sample" if greedy.startswith("do_sample") else "top_k"
            yield self.finding(
                f"{greedy} in {gen.path} makes generate() greedy, but {facts.family} is run by sampling "
                f"({facts.sampling_source}): greedy decoding gives silence or a loop",
                gen.path,
                f"/{key}",
                *gen.position(f"/{key}"),
                evidence={key: gen.data.get(key)},
                fix=Fix(
                    f"Set do_sample to true with the family's temperature and top_p ({facts.sampling_source})",
                    Applicability.DISPLAY_ONLY,
                ),
            )

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        facts, sites = _family_calls(source)
        if facts is None or (facts.min_repetition_penalty is None and not facts.needs_sampling):
            return
        for site in sites:
            found = _literal(site, "repetition_penalty")
            floor = facts.min_repetition_penalty
            penalty = _number(found[1]) if found is not None else None
            if found is not None and penalty is not None and floor is not None and penalty < floor:
                kw = found[0]
                where = pysource.span(source, kw.value)
                fix = None
                if isinstance(kw.value, (ast.Constant, ast.UnaryOp)) and where is not None:  # written in the call
                    fix = Fix(
                        f"Set repetition_penalty to {floor:g}",
                        Applicability.SAFE,
                        (ReplaceSource(source.path, where[0], where[1], f"{floor:g}"),),
                    )
                yield self.finding(
                    f"repetition_penalty={penalty:g} at {source.line_name(kw.value.lineno)} is below the {floor:g} "
                    f"{facts.family} requires ({facts.sampling_source}): generations loop or stall",
                    source.path,
                    line=kw.value.lineno,
                    column=kw.value.col_offset + 1,
                    evidence={"repetition_penalty": penalty, "required": floor},
                    fix=fix,
                )
            if not facts.needs_sampling:
                continue
            values = {name: _literal(site, name) for name in ("do_sample", "top_k", "temperature")}
            plain = {name: found[1] for name, found in values.items() if found is not None}
            greedy = _greedy(
                plain.get("do_sample") if site.name == "generate" else None,
                plain.get("top_k"),
                plain.get("temperature") if site.name == "SamplingParams" else None,
            )
            if greedy is None:
                continue
            kw = next(found[0] for name, found in values.items() if found is not None and greedy.startswith(name))
            yield self.finding(
                f"{greedy} at {source.line_name(kw.value.lineno)} decodes greedily, but {facts.family} is run by "
                f"sampling ({facts.sampling_source}): greedy decoding gives silence or a loop",
                source.path,
                line=kw.value.lineno,
                column=kw.value.col_offset + 1,
                evidence={"setting": greedy},
            )


def _greedy(do_sample: Any, top_k: Any, temperature: Any) -> str | None:
    """How a setting makes decoding greedy, or None."""
    if do_sample is False:
        return "do_sample=False"
    if _int(top_k) == 1:
        return "top_k=1"
    if _number(temperature) == 0:
        return "temperature=0"
    return None


# llama.cpp token types (llama-vocab.cpp): 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
GGUF_TYPE_NAMES = {1: "NORMAL", 2: "UNKNOWN", 3: "CONTROL", 4: "USER_DEFINED", 5: "UNUSED", 6: "BYTE"}


class GgufTtsTokens(Rule):
    id = "SRV004"
    name = "gguf-tts-tokens"
    summary = "A TTS GGUF whose stop tokens are not CONTROL tokens, or that carries a chat template"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        meta = target.gguf_metadata
        if meta is None or target.family is None:
            return
        family = target.family.name
        tokens, types = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.token_type")
        facts = serving_facts(family)
        wanted: dict[int, str] = {}
        for role, key in (("eos", "tokenizer.ggml.eos_token_id"), ("eot", "tokenizer.ggml.eot_token_id")):
            token_id = _int(meta.get(key))
            if token_id is not None:
                wanted.setdefault(token_id, f"the {role} token")
        tok = target.tokenizer.file if target.tokenizer is not None else None
        if facts is not None and facts.end_of_speech is not None and tok is not None:
            speech_end = tok.token_id(facts.end_of_speech)
            if speech_end is not None:
                wanted.setdefault(speech_end, "the end-of-speech token")
        if isinstance(tokens, list) and isinstance(types, list):
            for token_id, role in sorted(wanted.items()):
                if not 0 <= token_id < min(len(tokens), len(types)):
                    continue  # out of range: TOK rules say so
                kind = types[token_id]
                if kind in (3, 4):
                    continue
                yield self.finding(
                    f"{role} {tokens[token_id]!r} (id {token_id}) is typed {GGUF_TYPE_NAMES.get(kind, kind)} in "
                    f"tokenizer.ggml.token_type of {target.path}, not CONTROL: llama.cpp calls a stop token that is "
                    "not control-typed 'probably a bug in the model' and retypes only the chat tokens it knows "
                    "(<|eot_id|>, <|im_end|>, ...); this one is printed into the output as text, and written in a "
                    "prompt it is split into ordinary pieces instead of read as one token",
                    target.path,
                    "/tokenizer.ggml.token_type",
                    evidence={"token_id": token_id, "token": tokens[token_id], "type": kind},
                    fix=Fix(
                        "Reconvert with the token marked special (tokenizer.json added_tokens: special: true), so "
                        "convert_hf_to_gguf.py types it CONTROL",
                        Applicability.DISPLAY_ONLY,
                    ),
                )
        template = meta.get("tokenizer.chat_template")
        if isinstance(template, str) and template.strip():
            yield self.finding(
                f"{target.path} ({family}) carries a chat template ({len(template)} characters): "
                "Ollama and LM Studio apply it to every prompt, so the TTS prompt arrives wrapped in chat turns and "
                "the model answers in text instead of audio tokens",
                target.path,
                "/tokenizer.chat_template",
                evidence={"family": family, "template_chars": len(template)},
                fix=Fix(
                    "Serve it through the raw completion endpoint (llama.cpp /completion, Ollama raw: true), or set "
                    "a template that passes the prompt through (Ollama Modelfile TEMPLATE {{ .Prompt }})",
                    Applicability.DISPLAY_ONLY,
                ),
            )


class GgufVocabMismatch(Rule):
    id = "SRV005"
    name = "gguf-vocab-mismatch"
    summary = "A GGUF whose token list differs from the tokenizer.json beside it"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        meta = target.gguf_metadata
        tokens = meta.get("tokenizer.ggml.tokens") if meta is not None else None
        beside = os.path.join(os.path.dirname(target.path), "tokenizer.json")
        if not isinstance(tokens, list) or not tokens or not os.path.isfile(beside):
            return
        try:
            tok = load_tokenizer_json(beside)
        except ArtifactError:
            return  # the folder's own check reports an unreadable tokenizer.json
        shared = min(len(tokens), tok.id_count)
        differ = [(i, tokens[i], t) for i in range(shared) if (t := tok.token(i)) is not None and t != tokens[i]]
        missing = [(i, t) for i in range(len(tokens), tok.id_count) if (t := tok.token(i)) is not None]
        if not differ and not missing:
            return  # ids past the tokenizer in the GGUF are the conversion's padding to vocab_size ([PAD...])
        parts = []
        if differ:
            shown = "; ".join(f"{i}: {g!r} in the GGUF, {t!r} in tokenizer.json" for i, g, t in differ[:3])
            parts.append(f"{len(differ)} of the {shared} ids they share name different tokens ({shown})")
        if missing:
            shown = ", ".join(f"{t!r} ({i})" for i, t in missing[:3])
            ids = "id" if len(missing) == 1 else "ids"
            parts.append(f"tokenizer.json has {len(missing)} {ids} past the GGUF's {len(tokens)} tokens ({shown})")
        yield self.finding(
            f"{os.path.basename(target.path)} was not converted from the tokenizer.json beside it: "
            f"{'; '.join(parts)}. Prompts built with tokenizer.json (token ids sent to llama.cpp's server, "
            "end-of-speech and audio ids parsed from its output) mean other tokens to the GGUF",
            target.path,
            "/tokenizer.ggml.tokens",
            evidence={
                "differing": len(differ),
                "first_differing": [list(d) for d in differ[:3]],
                "missing_in_gguf": len(missing),
                "gguf_tokens": len(tokens),
                "tokenizer_ids": tok.id_count,
            },
            fix=Fix(
                "Reconvert the GGUF from this folder (convert_hf_to_gguf.py), or use the tokenizer it was made from",
                Applicability.DISPLAY_ONLY,
            ),
        )
