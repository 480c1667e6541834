"""Tiny random-weight Qwen2 models with real-shaped tokenizers, built on the fly for smoke and TUI tests."""

from __future__ import annotations

import json
import sys

import torch
from conftest import FIXTURES

sys.path.insert(0, FIXTURES)
from _make import QWEN_SPECIALS, byte_level_tokenizer, qwen_tokenizer_config, write_tokenizer

TOK = byte_level_tokenizer(QWEN_SPECIALS, audio_codes=64)
EOT, IM_START, IM_END = (TOK.token_to_id(s) for s in QWEN_SPECIALS)


def build(
    path,
    pad: int,
    eos: int,
    rows: int = 384,
    generation: dict | None = None,
    config: dict | None = None,
    tokenizer_config: dict | None = None,
) -> str:
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=rows,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        pad_token_id=pad,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(pad_token_id=pad, eos_token_id=eos)
    model.save_pretrained(str(path))
    names = {EOT: "<|endoftext|>", IM_START: "<|im_start|>", IM_END: "<|im_end|>"}
    write_tokenizer(
        str(path),
        TOK,
        qwen_tokenizer_config(
            **{
                "pad_token": names.get(pad, "<|endoftext|>"),
                "eos_token": names.get(eos, "<|im_end|>"),
                **(tokenizer_config or {}),  # a test may give the tokenizer other ids than the configs
            }
        ),
    )
    for name, extra in (("generation_config.json", generation), ("config.json", config)):
        if extra:
            data = json.loads((path / name).read_text())
            data.update(extra)
            (path / name).write_text(json.dumps(data, indent=2) + "\n")
    return str(path)
