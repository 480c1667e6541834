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
        ("llama", (), {"<custom_token_10>"}, (), "Orpheus"),
        ("llama", (), {"<|s_0|>"}, (), "Llasa"),
        (None, (), set(), ("t3.text_emb.weight", "t3.speech_emb.weight"), "Chatterbox T3"),
        (None, (), set(), ("model.gpt.text_embedding.weight",), "XTTS"),
        (None, (), set(), ("llm.speech_embedding.weight", "llm.llm_decoder.weight"), "CosyVoice"),
        ("qwen2", (), {"<|bicodec_semantic_0|>"}, (), "Spark-TTS"),
        ("valle", (), set(), (), "vall-e"),
        ("qwen2", (), {"hello"}, ("model.embed_tokens.weight",), None),
    ],
)
def test_detect_family(model_type, architectures, tokens, tensors, family) -> None:
    found = detect_family(model_type, architectures, tokens, tensors)
    assert (found.name if found else None) == family


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
