"""Which tensors hold the text vocabulary: the embedding, the head and its bias, found by name."""

from __future__ import annotations

from ttsdoctor.artifacts.tensors import TensorInfo

EMBEDDING_SUFFIXES = (
    "embed_text_tokens.weight",  # CSM (transformers): the text table, apart from the audio codebook table
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "tok_embeddings.weight",
    "text_emb.weight",
    "text_embedding.weight",
    "token_embd.weight",
    "shared.weight",
    "embed_in.weight",
    "text_embed.weight",
    "embedding.weight",
)
HEAD_SUFFIXES = ("lm_head.weight", "text_head.weight", "embed_out.weight", "output.weight")
NOT_TEXT_MARKERS = (
    "speech",
    "audio",
    "mel_",
    "codec",
    "position",
    "pos_emb",
    "wpe",
    "cond_",
    "speaker",
    "vision",
    "decoder.embed_tokens.",
    "embed_positions",
    "perceiver",
    "resps",
    "depth_decoder",  # CSM's and Moshi's depth decoders: audio codebooks
)


def _pick(tensors: dict[str, TensorInfo], suffixes: tuple[str, ...]) -> TensorInfo | None:
    candidates = []
    for name, info in tensors.items():
        if len(info.shape) != 2:
            continue
        lowered = name.lower()
        if any(marker in lowered for marker in NOT_TEXT_MARKERS):
            continue
        for rank, suffix in enumerate(suffixes):
            if name == suffix or name.endswith("." + suffix) or name.endswith("_" + suffix):
                candidates.append((name.count("."), rank, name, info))
                break
    if not candidates:
        return None
    return min(candidates)[3]


def text_embedding(tensors: dict[str, TensorInfo]) -> TensorInfo | None:
    """The input embedding of the text/main vocabulary, found by name."""
    return _pick(tensors, EMBEDDING_SUFFIXES)


def text_head(tensors: dict[str, TensorInfo]) -> TensorInfo | None:
    """The output head over the same vocabulary, found by name. None for a model that keeps its text table apart
    (CSM's `embed_text_tokens`): its `lm_head` predicts the first audio codebook, and no head predicts text."""
    if any(name == "embed_text_tokens.weight" or name.endswith(".embed_text_tokens.weight") for name in tensors):
        return None
    return _pick(tensors, HEAD_SUFFIXES)


def head_bias(tensors: dict[str, TensorInfo], head: TensorInfo | None) -> TensorInfo | None:
    """The 1-D bias next to the head weight (XTTS: gpt.text_head.bias), which has a row per id too."""
    if head is None or not head.name.endswith(".weight"):
        return None
    bias = tensors.get(head.name[: -len("weight")] + "bias")
    return bias if bias is not None and len(bias.shape) == 1 else None
