"""The codec registry and the families' audio-token layouts, kept as data in data/codecs.json."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import msgspec

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "codecs.json")


class Codec(msgspec.Struct, frozen=True):
    key: str
    name: str
    aliases: tuple[str, ...]
    sample_rate: int
    frames_per_second: float
    frame_rates_seen: tuple[float, ...]
    codebooks: int
    max_codebooks: int
    codebook_size: int


@functools.cache
def _data() -> dict[str, Any]:
    with open(DATA, encoding="utf-8") as fh:
        return json.load(fh)


@functools.cache
def codecs() -> dict[str, Codec]:
    out = {}
    for key, c in _data()["codecs"].items():
        out[key] = Codec(
            key,
            c["name"],
            tuple(c["aliases"]),
            c["sample_rate"],
            c["frames_per_second"],
            tuple(c["frame_rates_seen"]),
            c["codebooks"],
            c["max_codebooks"],
            c["codebook_size"],
        )
    return out


def find_codec(name: str | None, sample_rate: int | None = None) -> Codec | None:
    """A codec by key or alias, narrowed by sample rate when several share an alias (DAC, EnCodec)."""
    if not name:
        return None
    wanted = name.lower().replace("-", "_")
    matches = [c for c in codecs().values() if wanted == c.key or wanted in c.aliases]
    if sample_rate is not None:
        exact = [
            c
            for c in codecs().values()
            if (wanted == c.key or wanted in c.aliases or c.key.startswith(wanted)) and c.sample_rate == sample_rate
        ]
        matches = exact or matches
    return matches[0] if matches else None


def family_layout(family_name: str | None) -> dict[str, Any]:
    if family_name is None:
        return {}
    layout: dict[str, Any] = _data()["families"].get(family_name, {})
    return layout


class ServingFacts(msgspec.Struct, frozen=True):
    """What serving a family needs (data/codecs.json "serving"), each figure with where it comes from."""

    family: str
    tokens_per_second: float | None
    rate_source: str
    end_of_speech: str | None  # the token whose id must stop generation
    end_of_speech_source: str
    min_repetition_penalty: float | None
    needs_sampling: bool
    sampling_source: str
    start_of_speech: str | None = None  # the token after which only audio tokens come, until end_of_speech
    start_of_speech_source: str = ""
    float16_overflows: str = ""  # why the family cannot run in float16 (its source), "" when it can

    def seconds(self, tokens: int) -> float | None:
        return tokens / self.tokens_per_second if self.tokens_per_second else None


def serving_facts(family_name: str | None) -> ServingFacts | None:
    if family_name is None:
        return None
    entry = _data().get("serving", {}).get(family_name)
    if not isinstance(entry, dict):
        return None
    return ServingFacts(
        family_name,
        entry.get("tokens_per_second"),
        entry.get("tokens_per_second_source", ""),
        entry.get("end_of_speech"),
        entry.get("end_of_speech_source", ""),
        entry.get("min_repetition_penalty"),
        bool(entry.get("needs_sampling", False)),
        entry.get("sampling_source", ""),
        entry.get("start_of_speech"),
        entry.get("start_of_speech_source", ""),
        entry.get("float16_overflows", ""),
    )


def family_of_omni_arch(model_arch: str) -> ServingFacts | None:
    """The serving facts of the family whose speech-token LM vLLM-Omni names `model_arch` ("CosyVoiceModel")."""
    for name, entry in _data().get("serving", {}).items():
        if isinstance(entry, dict) and model_arch in entry.get("vllm_omni_archs", ()):
            return serving_facts(name)
    return None


def family_of_omni_pipeline(pipeline: str) -> tuple[ServingFacts, int] | None:
    """The serving facts of the family a vLLM-Omni deploy YAML's `pipeline:` names ("cosyvoice3"), and the stage_id of
    its speech-token LM."""
    for name, entry in _data().get("serving", {}).items():
        stages = entry.get("vllm_omni_pipelines") if isinstance(entry, dict) else None
        if isinstance(stages, dict) and isinstance(stages.get(pipeline), int):
            facts = serving_facts(name)
            if facts is not None:
                return facts, stages[pipeline]
    return None


def end_of_speech_tokens() -> frozenset[str]:
    """Every family's end-of-speech token ('<|SPEECH_GENERATION_END|>', '<custom_token_2>')."""
    entries = _data().get("serving", {}).values()
    return frozenset(
        e["end_of_speech"] for e in entries if isinstance(e, dict) and isinstance(e.get("end_of_speech"), str)
    )


def family_ending_with(token: str) -> ServingFacts | None:
    """The serving facts of the family whose end-of-speech token is `token` ('<|SPEECH_GENERATION_END|>': Llasa)."""
    for name, entry in _data().get("serving", {}).items():
        if isinstance(entry, dict) and entry.get("end_of_speech") == token:
            return serving_facts(name)
    return None


class PublishedIds(msgspec.Struct, frozen=True):
    """The ids scripts of a family hard-code and the token each is in the family's published tokenizer."""

    family: str
    ids: dict[int, str]
    source: str
    first_added: int  # the first id the family added to its base tokenizer: below it are the base's text tokens

    def end_of_speech(self, token: str | None) -> int | None:
        """The id of a token (the family's end of speech) in the published tokenizer."""
        return next((i for i, t in self.ids.items() if t == token), None) if token else None


def published_ids(family_name: str | None) -> PublishedIds | None:
    entry = _data().get("published_ids", {}).get(family_name or "")
    if not isinstance(entry, dict):
        return None
    ids = {int(k): v for k, v in entry["ids"].items()}
    return PublishedIds(family_name or "", ids, entry.get("source", ""), int(entry["first_added_id"]))
