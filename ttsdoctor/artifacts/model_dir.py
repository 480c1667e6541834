"""A model directory, loaded: every artifact that is present, and what could not be read."""

from __future__ import annotations

import os
from collections.abc import Container
from functools import cached_property
from typing import Any

import msgspec

from ttsdoctor.artifacts.adapter import ADAPTER_CONFIG, Adapter, load_adapter
from ttsdoctor.artifacts.embeddings import text_embedding, text_head
from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.artifacts.hf_config import ConfigScope, load_config, scopes
from ttsdoctor.artifacts.jsonfile import JsonDoc
from ttsdoctor.artifacts.special_tokens import SpecialDecl, config_decls, tokenizer_decls
from ttsdoctor.artifacts.tensors import TensorInfo, Weights
from ttsdoctor.artifacts.tokenizer import TokenizerBundle, load_tokenizer_bundle
from ttsdoctor.artifacts.weights import load_weights_in_dir
from ttsdoctor.codecs import ServingFacts, serving_facts
from ttsdoctor.families import Detection, Family, detect_family


class ModelDir(msgspec.Struct, dict=True):  # dict: room for the cached properties
    path: str
    names: list[str]
    config: JsonDoc | None = None
    generation_config: JsonDoc | None = None
    tokenizer: TokenizerBundle | None = None
    weights: Weights | None = None
    errors: list[ArtifactError] = []
    family: Family | None = None
    family_detection: Detection | None = None  # what the family was recognised from
    extra_decls: list[SpecialDecl] = []  # special ids from GGUF metadata
    gguf_metadata: dict[str, Any] | None = None  # a GGUF file's metadata (scalars, strings, token list and types)
    adapter: Adapter | None = None  # adapter_config.json of a PEFT adapter folder, and the base it names
    cache: dict[str, Any] = {}  # derived views rules share

    kind = "model_dir"

    # Derived views below are computed once, after loading: every rule reads the same ones.

    @cached_property
    def config_scopes(self) -> list[ConfigScope]:
        return scopes(self.config) if self.config is not None else []

    @property
    def weights_read(self) -> list[Weights]:
        return [self.weights] if self.weights is not None else []

    @property
    def serving(self) -> ServingFacts | None:
        """What serving the model's family needs (data/codecs.json): token rate, end-of-speech token, sampling."""
        return serving_facts(self.family.name if self.family is not None else None)

    @property
    def model_type(self) -> str | None:
        if self.config is None:
            return None
        value = self.config.data.get("model_type")
        return value if isinstance(value, str) else None

    @property
    def shares_tokenizer_space(self) -> bool:
        """Whether top-level config ids index the tokenizer vocabulary.

        Not so for codebook decoders (Parler-TTS, MusicGen) and encoder-decoder models, whose
        top-level ids live in the decoder's own vocabulary.
        """
        if self.family is not None and self.family.pad_equals_eos_by_design:
            return False
        return not (self.config is not None and self.config.data.get("is_encoder_decoder") is True)

    @property
    def text_vocab_key(self) -> str:
        """The config.json key that sizes the text vocabulary: `text_vocab_size` for CSM (CsmConfig's `vocab_size`,
        2051, is the audio codebook vocabulary; its text table `embed_text_tokens` has text_vocab_size rows)."""
        return "text_vocab_size" if self.model_type == "csm" else "vocab_size"

    @cached_property
    def _tokenizer_settings(self) -> dict[str, Any]:
        """tokenizer_config.json's top-level object, {} without one."""
        tok = self.tokenizer.config if self.tokenizer is not None else None
        return tok.data if tok is not None and isinstance(tok.data, dict) else {}

    @cached_property
    def ctc(self) -> bool:
        """A CTC model (wav2vec2, HuBERT, WavLM, MMS: `*ForCTC`, or a `Wav2Vec2CTCTokenizer`): one label a frame,
        no generation. Its config keeps Wav2Vec2Config's bos 1 / eos 2 defaults and its tokenizer appends <s> and
        </s> after the vocabulary, but neither is ever a label or an output: only pad (the blank) and unk are."""
        config = self.config.data if self.config is not None and isinstance(self.config.data, dict) else {}
        architectures = config.get("architectures")
        if isinstance(architectures, list) and any(isinstance(a, str) and a.endswith("ForCTC") for a in architectures):
            return True
        tokenizer_class = self._tokenizer_settings.get("tokenizer_class")
        return isinstance(tokenizer_class, str) and tokenizer_class.endswith("CTCTokenizer")

    @cached_property
    def unk_unused(self) -> bool:
        """A VITS / MMS-TTS tokenizer that drops every character outside its vocabulary (`normalize` true and
        `phonemize` false, as facebook/mms-tts-* ship) never produces unk: the `<unk>` transformers appends after the
        vocabulary when a fine-tune saves the tokenizer is never an input (VitsTokenizer.prepare_for_tokenization)."""
        data = self._tokenizer_settings
        return (
            data.get("tokenizer_class") == "VitsTokenizer"
            and data.get("normalize", True) is True
            and (data.get("phonemize", True) is False)
        )

    @cached_property
    def special_decls(self) -> tuple[SpecialDecl, ...]:
        out: list[SpecialDecl] = []
        shared = self.shares_tokenizer_space
        if self.config is not None:
            out += config_decls(self.config, "config.json", shared)
        if self.generation_config is not None:
            out += config_decls(self.generation_config, "generation_config.json", shared)
        if self.tokenizer is not None:
            out += tokenizer_decls(self.tokenizer)
        if self.ctc:  # bos and eos of a CTC model are never used: the token rules judge pad and unk only
            out = [d for d in out if d.role not in ("bos", "eos")]
        if self.unk_unused:
            out = [d for d in out if d.role != "unk"]
        return (*out, *self.extra_decls)

    @cached_property
    def tensors(self) -> dict[str, TensorInfo]:
        return self.weights.tensors if self.weights is not None else {}

    @cached_property
    def embedding(self) -> TensorInfo | None:
        return text_embedding(self.tensors)

    @cached_property
    def head(self) -> TensorInfo | None:
        return text_head(self.tensors)


MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    ADAPTER_CONFIG,
)


def is_model_dir(names: list[str]) -> bool:
    """A folder with model files; weights alone count (a run folder of .pth checkpoints, a bare state dict)."""
    return any(
        n in MODEL_FILES
        or n in ("vocab.json", "vocab.txt")
        or n.endswith((".safetensors", ".safetensors.index.json", ".pt", ".pth", ".ckpt", ".bin"))
        for n in names
    )


def load_model_dir(path: str, header_only: frozenset[str] = frozenset()) -> ModelDir:
    """Every artifact of the folder. Weight files in `header_only` hold a header and no data (see hub.py)."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return ModelDir(path=path, names=[], errors=[ArtifactError(path, f"cannot list directory: {exc.strerror}")])
    model = ModelDir(path=path, names=names)
    for name, attr in (("config.json", "config"), ("generation_config.json", "generation_config")):
        if name in names:
            try:
                setattr(model, attr, load_config(os.path.join(path, name)))
            except ArtifactError as exc:
                model.errors.append(exc)
    if any(
        n in names
        for n in (
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "added_tokens.json",
            "vocab.json",
            "vocab.txt",
        )
    ):
        bundle = load_tokenizer_bundle(path)
        model.errors += bundle.errors
        if bundle.present or bundle.file is not None:
            model.tokenizer = bundle
    if ADAPTER_CONFIG in names:
        try:
            model.adapter = load_adapter(os.path.join(path, ADAPTER_CONFIG))
        except ArtifactError as exc:
            model.errors.append(exc)
    model.weights = load_weights_in_dir(path, names, header_only)
    if model.weights is not None:
        model.errors += model.weights.errors
    architectures: tuple[str, ...] = ()
    if model.config is not None and isinstance(model.config.data.get("architectures"), list):
        architectures = tuple(a for a in model.config.data["architectures"] if isinstance(a, str))
    tokens: Container[str] | None = None
    if model.tokenizer is not None:  # without tokenizer.json, the added tokens its config declares
        tokens = model.tokenizer.file if model.tokenizer.file is not None else model.tokenizer.declared_ids
    model.family, model.family_detection = detect_family(model.model_type, architectures, tokens, tuple(model.tensors))
    return model
