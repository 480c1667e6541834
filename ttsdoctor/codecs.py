"""The codec registry and the families' audio-token layouts, kept as data in data/codecs.json."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "codecs.json")


@dataclass(frozen=True)
class Codec:
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
