"""TTS family detection from config, tokenizer tokens and tensor names."""

from __future__ import annotations

import pytest

from ttsdoctor.families import detect_family


@pytest.mark.parametrize(
    "model_type, architectures, tokens, tensors, family",
    [
        ("parler_tts", (), set(), (), "Parler-TTS"),
        (None, ("MusicgenForConditionalGeneration",), set(), (), "MusicGen"),
        ("qwen2", (), {"<|audio_start|>", "<|text_start|>", "<|0|>"}, (), "OuteTTS 0.2/0.3"),
        ("llama", (), {"<|c1_0|>", "<|c2_0|>"}, (), "OuteTTS 1.0"),
        ("llama", (), {"<custom_token_10>", "<custom_token_4>"}, (), "Orpheus"),
        ("llama", (), {"<|s_0|>", "<|SPEECH_GENERATION_START|>"}, (), "Llasa"),
        (None, (), set(), ("t3.text_emb.weight", "t3.speech_emb.weight"), "Chatterbox T3"),
        (None, (), set(), ("model.gpt.text_embedding.weight", "model.gpt.mel_embedding.weight"), "XTTS"),
        # moshi's LM: a text_emb.weight beside its audio emb.N.weight, no speech_emb.weight: not Chatterbox T3
        (None, (), set(), ("text_emb.weight", "emb.0.weight", "depformer_text_emb.weight"), None),
        ("qwen3_tts", ("Qwen3TTSForConditionalGeneration",), set(), (), "Qwen3-TTS"),
        (None, (), set(), ("llm.speech_embedding.weight", "llm.llm_decoder.weight"), "CosyVoice"),
        ("qwen2", (), {"<|bicodec_semantic_0|>", "<|bicodec_global_0|>"}, (), "Spark-TTS"),
        ("valle", (), set(), (), "vall-e"),
        ("qwen2", (), {"hello"}, ("model.embed_tokens.weight",), None),
        ("qwen2", (), {"<|audio_start|>"}, (), None),  # one token is not a family
        ("llama", (), {"<custom_token_10>"}, (), None),
    ],
)
def test_detect_family(model_type, architectures, tokens, tensors, family) -> None:
    found, detection = detect_family(model_type, architectures, tokens, tensors)
    assert (found.name if found else None) == family
    if found is not None:
        assert detection is not None and detection.evidence
        assert detection.from_tokens_only == (not model_type_known(model_type, architectures) and not tensors)


def model_type_known(model_type, architectures) -> bool:
    from ttsdoctor.families import FAMILIES

    return any(model_type in f.model_types or set(architectures) & set(f.architectures) for f in FAMILIES)


def test_training_config_family_is_reported() -> None:
    import json

    from conftest import run_main

    payload = json.loads(
        run_main(
            "check",
            "fixtures/COD001/bad/valle-resp-levels-above-encodec",
            "fixtures/VOC001/bad/chatterbox-amharic-887",
            "--format",
            "json",
        )[1]
    )
    assert {f["family"] for f in payload["families"]} == {"vall-e", "Chatterbox T3"}
