"""Every budget an input is read under, with the real-world figure it was chosen from.

A file past a budget gets a finding that names the limit and how to raise it; it never hangs the
check, exhausts memory or ends in a traceback. Each budget is about ten times the largest real
artifact we know of, so no real model meets one. Raise a limit for one run with the environment
variable TTSDOCTOR_LIMIT_<NAME> (for example TTSDOCTOR_LIMIT_GGUF_ARRAY_ITEMS=10000000).
"""

from __future__ import annotations

import os

import msgspec


class Limit(msgspec.Struct, frozen=True):
    name: str
    default: int
    unit: str
    why: str


LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit("json_bytes", 1 << 30, "bytes", "tokenizer.json of a 256k-vocabulary model is ~35 MB"),
        Limit("config_json_bytes", 16 << 20, "bytes", "config.json files are kilobytes (id2label tables ~100 KB)"),
        Limit("training_config_bytes", 16 << 20, "bytes", "training YAML/JSON files are a few KB"),
        Limit(
            "training_config_values",
            200_000,
            "values",
            "the largest real training configs hold a few thousand values; YAML aliases can expand to billions",
        ),
        Limit("tokenizer_bytes", 1 << 30, "bytes", "the largest real tokenizer.json files are ~35 MB"),
        Limit("source_bytes", 8 << 20, "bytes", "the largest file of transformers' own source is ~300 KB"),
        Limit("notebook_bytes", 64 << 20, "bytes", "notebooks carry outputs; Colab caps a notebook at ~20 MB"),
        Limit(
            "safetensors_header_bytes",
            100 << 20,
            "bytes",
            "the safetensors library refuses larger headers; a 70B shard's header is ~100 KB",
        ),
        Limit(
            "safetensors_tensors",
            200_000,
            "tensors",
            "a shard lists a few thousand tensors; DeepSeek-V3's whole index maps ~92k",
        ),
        Limit("pickle_bytes", 256 << 20, "bytes", "a 7B state dict's data.pkl is ~50 KB"),
        Limit("pickle_ops", 5_000_000, "opcodes", "a 7B state dict's data.pkl has ~20k opcodes"),
        Limit(
            "pickle_objects",
            500_000,
            "objects",
            "containers and tensors walked naming tensors: a state dict holds thousands; memo 'DAG bombs' stop here",
        ),
        Limit("pickle_depth", 64, "levels", "state dicts nest 2-4 levels"),
        Limit("gguf_kv", 100_000, "keys", "real GGUF files carry ~40 metadata keys"),
        Limit(
            "gguf_array_items",
            3_000_000,
            "items",
            "the largest real GGUF arrays: 280k BPE merges (Llama 3), 262k tokens (Gemma 3)",
        ),
        Limit("gguf_string_bytes", 16 << 20, "bytes", "chat templates, the longest GGUF strings, are ~10 KB"),
        Limit("gguf_tensors", 100_000, "tensors", "a 671B MoE GGUF lists ~1,000 tensors"),
        Limit(
            "hub_file_bytes",
            64 << 20,
            "bytes",
            "files a Hub check downloads whole: tokenizer.json of a 256k-vocabulary model is ~35 MB",
        ),
        Limit("hub_files", 10_000, "files", "files a Hub check reads: model repositories hold tens to hundreds"),
        Limit(
            "hub_header_bytes",
            256 << 20,
            "bytes",
            "GGUF metadata read by range requests: a 262k-token list with scores and types is ~10 MB",
        ),
        Limit(
            "resize_rows",
            4_000_000,
            "rows",
            "fix never grows an embedding past this: 15x the largest real vocabulary (262k)",
        ),
    )
}


def env_name(name: str) -> str:
    return f"TTSDOCTOR_LIMIT_{name.upper()}"


def limit(name: str) -> int:
    """The budget `name`: its default, or the value of TTSDOCTOR_LIMIT_<NAME> when that is a positive integer."""
    default = LIMITS[name].default
    raw = os.environ.get(env_name(name))
    if raw is None:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        return default
    return value if value > 0 else default


def over(name: str, seen: int | str | None = None) -> str:
    """The end of a message for an input past a budget: which limit, its value, how to raise it."""
    spec = LIMITS[name]
    what = f"{seen} {spec.unit}, " if seen is not None else ""
    return f"{what}above the {name} limit of {limit(name)} {spec.unit} (raise it with {env_name(name)}=N)"


def _human(value: int, unit: str) -> str:
    if unit == "bytes":
        for suffix, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
            if value >= scale and value % scale == 0:
                return f"{value // scale} {suffix}"
    return f"{value:,} {unit}"


def markdown_table() -> str:
    """The README's table of budgets (tests/test_repo.py checks that README.md holds exactly this)."""
    rows = ["| limit (`TTSDOCTOR_LIMIT_<NAME>`) | budget | chosen from |", "| --- | --- | --- |"]
    rows += [f"| `{spec.name}` | {_human(spec.default, spec.unit)} | {spec.why} |" for spec in LIMITS.values()]
    return "\n".join(rows) + "\n"
