"""POS: configured maximum lengths against the position table they index."""

from __future__ import annotations

from collections.abc import Iterator
from functools import singledispatch

import msgspec

from ttsdoctor.artifacts.jsonfile import JsonDoc
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.tensors import TensorInfo
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import ModelOrConfigRule

POSITION_MARKERS = ("pos_emb", "position_embeddings", "wpe.weight", "embed_positions", "positional_embedding")
HUGE = 10**9  # tokenizers write 1e30 for "no limit"
ROPE_TYPES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3", "olmo", "granite", "qwen2_moe")


class Length(msgspec.Struct, frozen=True):
    value: int
    what: str  # "max_length in generation_config.json"
    path: str
    pointer: str | None
    line: int | None
    column: int | None
    topic: str  # "text" | "speech" | "" (any)
    doc: JsonDoc | None = None  # where line and column are found, only when a finding needs them

    def position(self) -> tuple[int | None, int | None]:
        if self.doc is not None and self.pointer is not None:
            return self.doc.position(self.pointer)
        return self.line, self.column


def position_tables(tensors: dict[str, TensorInfo]) -> list[TensorInfo]:
    return [t for n, t in tensors.items() if len(t.shape) == 2 and any(m in n.lower() for m in POSITION_MARKERS)]


def _topic(name: str) -> str:
    lowered = name.lower()
    if "speech" in lowered or "audio" in lowered or "mel" in lowered:
        return "speech"
    if "text" in lowered:
        return "text"
    return ""


def _matches(length: Length, table: TensorInfo, tables: list[TensorInfo]) -> bool:
    topic = _topic(table.name)
    if length.topic:
        return topic == length.topic
    return len(tables) == 1 or topic in ("", "text")


class PositionOverflow(ModelOrConfigRule):
    id = "POS001"
    name = "position-overflow"
    summary = "A configured maximum length above max_position_embeddings or the rows of a position table"
    severity = Severity.ERROR

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        lengths = list(_lengths(target))
        if not lengths:
            return
        tables = position_tables(_tensors(target))
        for length in lengths:
            for table in tables:
                rows = table.rows or 0
                if _matches(length, table, tables) and length.value > rows:
                    yield self.finding(
                        f"{length.what} is {length.value} but the position table {table.name} in "
                        f"{table.path} has {rows} rows: position {rows} indexes past it (IndexError "
                        "on CPU, device-side assert on CUDA)",
                        length.path,
                        length.pointer,
                        *length.position(),
                        {"length": length.value, "rows": rows},
                    )
        limit = _declared_limit(target)
        if limit is None:
            return
        value, what, rope = limit
        for length in lengths:
            if length.value > value and not length.topic:
                if rope:
                    effect = (
                        "positions beyond it were never trained: rotary embeddings do not fail, the output degrades "
                        "(garbled audio from a TTS model)"
                    )
                    severity = Severity.WARNING
                else:
                    effect = "position ids beyond it index past the position table"
                    severity = Severity.ERROR
                yield self.finding(
                    f"{length.what} is {length.value}, above {what} {value}: {effect}",
                    length.path,
                    length.pointer,
                    *length.position(),
                    {"length": length.value, "limit": value},
                    severity=severity,
                )


@singledispatch
def _tensors(target: ModelDir | TrainingConfig) -> dict[str, TensorInfo]:
    raise TypeError(type(target).__name__)


@_tensors.register
def _model_tensors(target: ModelDir) -> dict[str, TensorInfo]:
    return target.tensors


@_tensors.register
def _config_tensors(target: TrainingConfig) -> dict[str, TensorInfo]:
    out: dict[str, TensorInfo] = {}
    for named in target.named("weights"):
        if named.weights is not None:
            out.update(named.weights.tensors)
    return out


@singledispatch
def _declared_limit(target: ModelDir | TrainingConfig) -> tuple[int, str, bool] | None:
    """The model's position limit: (value, where, whether positions are rotary)."""
    raise TypeError(type(target).__name__)


@_declared_limit.register
def _model_limit(target: ModelDir) -> tuple[int, str, bool] | None:
    if target.config is None or not target.shares_tokenizer_space:
        return None
    scope = target.config_scopes[0]
    for key in ("max_position_embeddings", "n_positions"):
        value = scope.get_int(key)
        if value is not None:
            rope = scope.has("rope_theta") or scope.has("rope_scaling") or target.model_type in ROPE_TYPES
            return value, f"{key} in {target.config.path}", rope
    return None


@_declared_limit.register
def _config_limit(target: TrainingConfig) -> tuple[int, str, bool] | None:
    entry = target.first_int("max_position_embeddings", "n_positions")
    if entry is None:
        return None
    return entry.value, f"{entry.key} in {target.path}", False


@singledispatch
def _lengths(target: ModelDir | TrainingConfig) -> Iterator[Length]:
    """The configured maximum lengths to compare with the position limit."""
    raise TypeError(type(target).__name__)


@_lengths.register
def _model_lengths(model: ModelDir) -> Iterator[Length]:
    gen = model.generation_config
    if gen is not None:
        value = gen.data.get("max_length")
        if isinstance(value, int) and not isinstance(value, bool) and value < HUGE:
            yield Length(value, f"max_length in {gen.path}", gen.path, "/max_length", None, None, "", gen)
    tok_cfg = model.tokenizer.config if model.tokenizer is not None else None
    if tok_cfg is not None:
        value = tok_cfg.data.get("model_max_length")
        if isinstance(value, int) and not isinstance(value, bool) and value < HUGE:
            yield Length(
                value,
                f"model_max_length in {tok_cfg.path}",
                tok_cfg.path,
                "/model_max_length",
                None,
                None,
                "",
                tok_cfg,
            )


CONFIG_LENGTH_KEYS = (
    ("max_text_tokens", "text"),
    ("max_text_len", "text"),
    ("max_speech_tokens", "speech"),
    ("max_mel_tokens", "speech"),
    ("max_audio_tokens", "speech"),
    ("max_length", ""),
    ("max_seq_len", ""),
    ("max_seq_length", ""),
    ("max_sequence_length", ""),
)
PROMPT_KEYS = ("max_prompt_tokens", "max_prompt_length", "max_input_length", "prompt_budget")


@_lengths.register
def _config_lengths(config: TrainingConfig) -> Iterator[Length]:
    for key, topic in CONFIG_LENGTH_KEYS:
        entry = config.first_int(key)
        if entry is not None and 0 < entry.value < HUGE:
            yield Length(
                entry.value, f"{key} in {config.path}", config.path, entry.pointer, entry.line, entry.column, topic
            )
    new = config.first_int("max_new_tokens")
    prompt = config.first_int(*PROMPT_KEYS)
    if new is not None and prompt is not None:
        yield Length(
            new.value + prompt.value,
            f"max_new_tokens {new.value} + {prompt.key} {prompt.value} in {config.path}",
            config.path,
            new.pointer,
            new.line,
            new.column,
            "",
        )
