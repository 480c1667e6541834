"""A PEFT adapter folder: adapter_config.json, the tensors PEFT saved, and the base model it names.

PEFT (peft/utils/save_and_load.py, get_peft_model_state_dict) saves the LoRA matrices (`...q_proj.lora_A.weight`,
`...lora_B.weight`, `...embed_tokens.lora_embedding_B`), the trained copies of `modules_to_save`, the deltas of
`trainable_token_indices` (`...token_adapter.trainable_tokens_delta`) and, when the vocabulary was resized during
fine-tuning ("Setting `save_embedding_layers` to `True` as the embedding layer has been resized"), the whole
embedding and head as they were at save time. Keys start with `base_model.model.`.

The base is looked up where PEFT and transformers would find it without a download: a local folder (absolute,
relative to the adapter folder, or relative to the current directory), then the Hugging Face cache. Only its
config.json is read.
"""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.artifacts.hf_config import load_config
from ttsdoctor.artifacts.jsonfile import JsonDoc, load_json
from ttsdoctor.artifacts.tensors import TensorInfo

ADAPTER_CONFIG = "adapter_config.json"
# Module names of the input embedding and the output head (PEFT's EMBEDDING_LAYER_NAMES is embed_tokens, lm_head)
EMBEDDING_MODULES = ("embed_tokens", "wte", "word_embeddings", "tok_embeddings", "embed_in", "shared")
HEAD_MODULES = ("lm_head", "embed_out", "output")
# Wrappers PEFT puts between a module and its weight in saved keys
_WRAPPERS = ("modules_to_save.", "original_module.", "token_adapter.", "base_layer.")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Adapter(msgspec.Struct, frozen=True):
    doc: JsonDoc  # adapter_config.json
    base_dir: str | None  # the base model folder found locally, if any
    base_config: JsonDoc | None  # its config.json

    @property
    def data(self) -> dict[str, Any]:
        return self.doc.data if isinstance(self.doc.data, dict) else {}

    @property
    def base_name(self) -> str | None:
        value = self.data.get("base_model_name_or_path")
        return value if isinstance(value, str) and value else None

    @property
    def peft_type(self) -> str | None:
        value = self.data.get("peft_type")
        return value if isinstance(value, str) else None

    def names(self, key: str) -> list[str]:
        """modules_to_save / target_modules as a list of module names ([] when null; a string as one name)."""
        value = self.data.get(key)
        if isinstance(value, str):
            return [value]
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def base_int(self, key: str) -> int | None:
        """A top-level integer of the base config.json (or of its text_config)."""
        if self.base_config is None or not isinstance(self.base_config.data, dict):
            return None
        for scope in (self.base_config.data, self.base_config.data.get("text_config")):
            if isinstance(scope, dict):
                value = scope.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
        return None

    @property
    def base_tied(self) -> bool | None:
        """Whether the base ties its head to its embedding; None when its config does not say (the default depends
        on the model class)."""
        if self.base_config is None or not isinstance(self.base_config.data, dict):
            return None
        for scope in (self.base_config.data.get("text_config"), self.base_config.data):
            if isinstance(scope, dict) and isinstance(scope.get("tie_word_embeddings"), bool):
                return bool(scope["tie_word_embeddings"])
        return None


def module_of(key: str) -> str:
    """A saved key's module path without PEFT's prefix and wrappers: 'model.embed_tokens' for
    'base_model.model.model.embed_tokens.modules_to_save.weight'."""
    key = key.removeprefix("base_model.model.")
    for wrapper in _WRAPPERS:
        key = key.replace(wrapper, "")
    return key.rsplit(".", 1)[0] if key.endswith((".weight", ".bias")) else key


def saved_rows(tensors: dict[str, TensorInfo], modules: tuple[str, ...]) -> TensorInfo | None:
    """The 2-D tensor the adapter brings for one of these modules (the trained copy of a module to save before
    the copy of the original, before the embedding PEFT saved because the vocabulary was resized)."""
    found: list[tuple[int, str, TensorInfo]] = []
    for name, info in tensors.items():
        if len(info.shape) != 2 or not name.endswith(".weight") or "lora_" in name:
            continue
        if module_of(name).rsplit(".", 1)[-1] not in modules:
            continue
        rank = 0 if ".modules_to_save." in name else 2 if ("original_module." in name or "base_layer." in name) else 1
        found.append((rank, name, info))
    return min(found)[2] if found else None


def hf_hub_cache() -> str:
    """huggingface_hub's cache folder, found as huggingface_hub finds it but from the environment of now (it reads
    its own once, at import, and importing it is not needed to look in the cache)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return os.path.expanduser(os.environ[name])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "hub")


def _cached_snapshot(name: str, revision: str | None, marker: str) -> str | None:
    repo = os.path.join(hf_hub_cache(), "models--" + name.replace("/", "--"))
    ref = revision or "main"
    try:
        with open(os.path.join(repo, "refs", ref), encoding="utf-8") as fh:
            ref = fh.read().strip()
    except OSError:
        pass
    snapshot = os.path.join(repo, "snapshots", ref)
    return snapshot if os.path.isfile(os.path.join(snapshot, marker)) else None


def find_local_model(here: str, name: str, revision: str | None, marker: str = "config.json") -> str | None:
    """The local folder of the model `name` with a `marker` file, or None (a Hub id not in the cache: nothing is
    downloaded). Looked up relative to `here` (the adapter's or script's folder) first, so a checked tree means the
    same wherever it is checked from, then as transformers reads it (the current directory, the HF cache)."""
    candidates = [name] if os.path.isabs(name) else [os.path.join(here, name), name]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, marker)):
            return os.path.normpath(candidate)
    if _HUB_ID.match(name):
        return _cached_snapshot(name, revision, marker)
    return None


def load_adapter(path: str) -> Adapter:
    """adapter_config.json at `path` and the config of the base it names. Raises ArtifactError for an unreadable
    adapter config; an unreadable base config is left out (it is the base folder's problem, reported there)."""
    doc = load_json(path)
    adapter = Adapter(doc, None, None)
    name, revision = adapter.base_name, adapter.data.get("revision")
    here = os.path.dirname(path) or "."
    if name is None:
        return adapter
    base_dir = find_local_model(here, name, revision if isinstance(revision, str) else None)
    if base_dir is None or os.path.realpath(base_dir) == os.path.realpath(here):
        return adapter
    try:
        return Adapter(doc, base_dir, load_config(os.path.join(base_dir, "config.json")))
    except ArtifactError:
        return Adapter(doc, base_dir, None)
