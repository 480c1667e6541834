"""TTS model families, recognised from config, tokenizer and weight names.

Detection is data: each family lists the config `model_type`s / architectures, tokenizer token
markers and tensor-name markers that identify it. A `model_type` or an architecture identifies a family alone;
token spelling needs at least two of the family's markers (one `<|audio_start|>` is not OuteTTS), and a family
inferred from spelling alone only ever raises warnings. Every detection says what it rests on (`Detection`), and
a project can name the family of a folder in its settings (`[tool.ttsdoctor.families]`).
"""

from __future__ import annotations

from collections.abc import Container

import msgspec


class Family(msgspec.Struct, frozen=True):
    name: str
    model_types: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    token_markers: tuple[str, ...] = ()  # any of these tokens in the tokenizer
    tensor_markers: tuple[str, ...] = ()  # tensor names containing each of these
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
    Family("OuteTTS 1.0", token_markers=("<|c1_0|>", "<|c2_0|>", "<|c1_1024|>", "<|c2_1024|>")),
    Family("OuteTTS 0.2/0.3", token_markers=("<|audio_start|>", "<|text_start|>", "<|audio_end|>", "<|0|>")),
    Family("Orpheus", token_markers=("<custom_token_10>", "<custom_token_4>", "<custom_token_28000>")),
    Family("Llasa", token_markers=("<|s_0|>", "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>")),
    Family(
        "CosyVoice",
        model_types=("cosyvoice", "cosyvoice2"),
        tensor_markers=("speech_embedding.weight", "llm_decoder.weight"),
    ),
    Family("Spark-TTS", token_markers=("<|bicodec_semantic_0|>", "<|bicodec_global_0|>")),
    Family("Qwen3-TTS", model_types=("qwen3_tts",), architectures=("Qwen3TTSForConditionalGeneration",)),
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


class Detection(msgspec.Struct, frozen=True):
    """How a folder's family was recognised: from what, and whether only from the spelling of tokens."""

    evidence: str  # "model_type 'parler_tts'", "tokens <|s_0|>, <|SPEECH_GENERATION_START|>", "settings"
    from_tokens_only: bool = False


FAMILY_BY_NAME = {f.name.lower(): f for f in FAMILIES}


def detect_family(
    model_type: str | None, architectures: tuple[str, ...], tokens: Container[str] | None, tensor_names: tuple[str, ...]
) -> tuple[Family | None, Detection | None]:
    for family in FAMILIES:
        if model_type and model_type in family.model_types:
            return family, Detection(f"model_type {model_type!r}")
        matched = [a for a in architectures if a in family.architectures]
        if matched:
            return family, Detection(f"architecture {matched[0]}")
    for family in FAMILIES:
        # every marker: moshi's LM has a text_emb.weight too, but no speech_emb.weight (Chatterbox T3 has both)
        tensors = [m for m in family.tensor_markers if any(m in name for name in tensor_names)]
        if tensors and len(tensors) == len(family.tensor_markers):
            return family, Detection(f"tensor names with {', '.join(tensors)}")
    for family in FAMILIES:
        found = [m for m in family.token_markers if tokens and m in tokens]
        if len(found) >= 2:
            return family, Detection(f"tokens {', '.join(found)}", from_tokens_only=True)
    return None, None
