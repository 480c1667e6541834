"""TTS model families, recognised from config, tokenizer and weight names.

Detection is data: each family lists the config `model_type`s / architectures, tokenizer token
markers and tensor-name markers that identify it. The first family whose markers match wins.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    token_markers: tuple[str, ...] = ()  # any of these tokens in the tokenizer
    tensor_markers: tuple[str, ...] = ()  # any tensor name containing one of these
    config_markers: tuple[str, ...] = ()  # keys of a training config (two of them identify the family)
    value_markers: tuple[str, ...] = ()  # a string value containing one of these identifies it too
    pad_equals_eos_by_design: bool = False  # codebook decoders with delay pattern and explicit masks
    note: str = ""


FAMILIES: tuple[Family, ...] = (
    Family(
        "Parler-TTS",
        model_types=("parler_tts",),
        architectures=("ParlerTTSForConditionalGeneration",),
        pad_equals_eos_by_design=True,
        note="pad == eos == codebook size by design: delay pattern with explicit masks",
    ),
    Family(
        "MusicGen",
        model_types=("musicgen", "musicgen_melody", "musicgen_decoder"),
        architectures=(
            "MusicgenForConditionalGeneration",
            "MusicgenForCausalLM",
            "MusicgenMelodyForConditionalGeneration",
        ),
        pad_equals_eos_by_design=True,
        note="pad == bos == codebook size by design: delay pattern with explicit masks",
    ),
    Family(
        "XTTS",
        model_types=("xtts",),
        tensor_markers=("gpt.text_embedding.weight", "gpt.mel_embedding"),
        config_markers=("gpt_num_audio_tokens", "gpt_number_text_tokens", "gpt_start_audio_token"),
    ),
    Family(
        "Chatterbox T3",
        model_types=("t3",),
        tensor_markers=("text_emb.weight", "speech_emb.weight"),
        config_markers=(
            "speech_tokens_dict_size",
            "text_tokens_dict_size",
            "start_speech_token",
            "max_speech_tokens",
            "freeze_until_index",
        ),
        value_markers=("chatterbox", "t3_mtl", "t3_cfg"),
    ),
    Family("OuteTTS 1.0", token_markers=("<|c1_0|>", "<|c2_0|>")),
    Family("OuteTTS 0.2/0.3", token_markers=("<|audio_start|>", "<|text_start|>")),
    Family("Orpheus", token_markers=("<custom_token_10>",)),
    Family("Llasa", token_markers=("<|s_0|>", "<|SPEECH_GENERATION_START|>")),
    Family(
        "CosyVoice",
        model_types=("cosyvoice", "cosyvoice2"),
        tensor_markers=("speech_embedding.weight", "llm_decoder.weight"),
    ),
    Family("Spark-TTS", token_markers=("<|bicodec_semantic_0|>",)),
    Family(
        "vall-e",
        model_types=("valle", "vall_e"),
        tensor_markers=("resps_emb",),
        config_markers=("resp_levels", "audio_backend", "prom_levels"),
    ),
    Family(
        "F5-TTS",
        model_types=("f5_tts",),
        tensor_markers=("transformer.text_embed.text_embed",),
        config_markers=("tokenizer_path", "mel_spec", "n_mel_channels", "text_num_embeds"),
        value_markers=("f5tts", "f5-tts", "e2tts"),
    ),
)


def detect_config_family(keys: set[str], strings: str = "") -> Family | None:
    """The family of a training config: two or more characteristic keys, or a value naming it."""
    lowered = strings.lower()
    for family in FAMILIES:
        if any(marker in lowered for marker in family.value_markers):
            return family
    best = max(FAMILIES, key=lambda f: sum(k in keys for k in f.config_markers))
    return best if sum(k in keys for k in best.config_markers) >= 2 else None


def detect_family(
    model_type: str | None, architectures: tuple[str, ...], tokens: Container[str] | None, tensor_names: tuple[str, ...]
) -> Family | None:
    for family in FAMILIES:
        if model_type and model_type in family.model_types:
            return family
        if any(a in family.architectures for a in architectures):
            return family
    for family in FAMILIES:
        if tokens and any(marker in tokens for marker in family.token_markers):
            return family
        if any(marker in name for marker in family.tensor_markers for name in tensor_names):
            return family
    return None
