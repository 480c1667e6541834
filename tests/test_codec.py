"""The codec registry holds the real codecs' numbers; families map to them."""

from __future__ import annotations

import pytest

from ttsdoctor.codecs import codecs, family_layout, find_codec
from ttsdoctor.families import FAMILIES


@pytest.mark.parametrize(
    "alias, rate, name, fps, levels, size",
    [
        ("encodec", 24000, "EnCodec 24 kHz", 75, 8, 1024),
        ("dac", 44100, "DAC 44.1 kHz", 86.13, 9, 1024),
        ("dac", 24000, "DAC 24 kHz", 75, 32, 1024),
        ("nemo", None, "NVIDIA audio-codec-44khz (FSQ)", 86, 8, 1000),
        ("snac", None, "SNAC 24 kHz", 12, 3, 4096),
        ("mimi", None, "Mimi", 12.5, 8, 2048),
        ("xcodec2", None, "X-codec-2.0", 50, 1, 65536),
        ("s3tokenizer", None, "S3 speech tokenizer (v2)", 25, 1, 6561),
    ],
)
def test_registry_values(alias, rate, name, fps, levels, size) -> None:
    codec = find_codec(alias, rate)
    assert codec is not None and codec.name == name
    assert (codec.frames_per_second, codec.codebooks, codec.codebook_size) == (fps, levels, size)


def test_dac_44khz_rounding_seen_in_implementations() -> None:
    assert find_codec("dac", 44100).frame_rates_seen == (86, 87)


def test_every_family_layout_names_a_known_codec() -> None:
    known = {f.name for f in FAMILIES}
    for family in known:
        layout = family_layout(family)
        if layout.get("codec"):
            assert layout["codec"] in codecs(), family
    assert family_layout("Orpheus")["audio_tokens"][0]["count"] == 7 * 4096 + 10
    assert family_layout("OuteTTS 0.2/0.3")["audio_tokens"][0]["count"] == 4100
