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


# The smallest shape transformers builds a working decoder of (the speech and tokenizer tests' models).
TINY_SHAPE = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}

# A Llasa-shaped speech model whose greedy (or sharply sampled) next token is a chosen function of the current one.
SPEECH_SPECIALS = ["<|end_of_text|>", "<|eot_id|>", "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>"]
SPEECH_TOK = byte_level_tokenizer(SPEECH_SPECIALS, audio_codes=64, code_format="<|s_{}|>")
END_OF_TEXT, EOT_ID, SPEECH_START, SPEECH_END = (SPEECH_TOK.token_to_id(s) for s in SPEECH_SPECIALS)


def audio(code: int) -> int:
    return SPEECH_TOK.token_to_id(f"<|s_{code}|>")


def build_speech(path, successors: dict[int, int], generation: dict, tok=SPEECH_TOK) -> str:
    """A tiny Llama with Llasa's markers and 64 `<|s_N|>` tokens whose next token after t is successors[t].

    Attention and MLP write nothing (o_proj, down_proj zero), so the last hidden state is the embedding of the
    current token: token t sits at angle 2*pi*t/V in the first two dimensions, and the head row of successors[t]
    points at that angle, with a logit gap large enough that sampling at temperature 0.8 follows it too."""
    import math

    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    rows = tok.get_vocab_size()
    cfg = LlamaConfig(
        vocab_size=rows,
        **TINY_SHAPE,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=END_OF_TEXT,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        angle = [2 * math.pi * t / rows for t in range(rows)]
        embed = model.model.embed_tokens.weight
        embed.zero_()
        embed[:, 0] = torch.tensor([math.cos(a) for a in angle])
        embed[:, 1] = torch.tensor([math.sin(a) for a in angle])
        head = model.lm_head.weight
        head.zero_()
        for t, u in successors.items():
            head[u, 0], head[u, 1] = 2000 * math.cos(angle[t]), 2000 * math.sin(angle[t])
    model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(str(path))
    write_tokenizer(
        str(path),
        tok,
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": "<|eot_id|>",
            "pad_token": "<|end_of_text|>",
            "model_max_length": 2048,
        },
    )
    return str(path)
