"""Training configs (YAML or JSON) and the files they name.

Every scalar is flattened to an `Entry` with its JSON pointer and line. String values that name a
file (tokenizer, checkpoint, extended embeddings...) are resolved the way real projects run them:
first against the config's own directory, then against the enclosing project root (the nearest
ancestor holding .git, pyproject.toml or setup.py), since training scripts usually run from there.
A directory is accepted where it holds tokenizer or weight files. The files found are loaded with the
same loaders as model directories.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ttsdoctor.artifacts.errors import ArtifactError, decode_utf8, read_bytes
from ttsdoctor.artifacts.jsonfile import escape_pointer_part, parse_json_text, quote_json5_keys, strip_json_comments
from ttsdoctor.artifacts.source import parse_suppressions
from ttsdoctor.artifacts.tensors import Weights
from ttsdoctor.artifacts.tokenizer import TokenizerBundle, load_tokenizer_bundle
from ttsdoctor.artifacts.weights import WEIGHT_SUFFIXES, load_weight_file, load_weights_in_dir
from ttsdoctor.families import Family, detect_config_family
from ttsdoctor.limits import limit, over

PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "requirements-dev.txt")
# A Hugging Face Hub repository id (org/name): a remote reference, not a missing file
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
HUB_KEY_HINTS = ("model", "tokenizer", "pretrained", "base", "checkpoint", "ckpt", "processor", "codec", "repo", "hub")
FILE_KEY_HINTS = (
    "path",
    "file",
    "dir",
    "tokenizer",
    "checkpoint",
    "ckpt",
    "pretrained",
    "embedding",
    "vocab",
    "weights",
    "model",
    "resume",
    "init_from",
    "load",
)
OUTPUT_KEY_HINTS = (
    "output",
    "save",
    "saving",
    "out_dir",
    "log",
    "cache",
    "export",
    "result",
    "wandb",
    "tensorboard",
    "dump",
)
FILE_SUFFIXES = (*WEIGHT_SUFFIXES, ".json", ".yaml", ".yml", ".txt", ".model", ".gguf")


class Entry(msgspec.Struct, frozen=True):
    pointer: str
    key: str  # the last key (or index) of the pointer
    value: Any
    line: int | None
    column: int | None


class NamedFile(msgspec.Struct):
    entry: Entry
    role: str  # "tokenizer" | "base_tokenizer" | "weights" | "other"
    resolved: str | None  # the path that exists, as used
    tried: tuple[str, ...]  # every path tried, in order
    remote: bool = False  # a Hub id (org/name) that is not a local path: a remote reference
    tokenizer: TokenizerBundle | None = None
    weights: Weights | None = None
    outside_project: bool = False  # a relative path climbing out of the project: reported, never read


class TrainingConfig(msgspec.Struct):
    path: str
    format: str  # "yaml" | "json"
    data: Any
    entries: list[Entry]
    named_files: list[NamedFile] = []
    project_root: str | None = None
    errors: list[ArtifactError] = []
    suppressions: dict[int, frozenset[str] | None] = {}  # YAML comments
    family: Family | None = None
    cache: dict[str, Any] = {}  # derived views rules share
    notes: list[str] = []  # how the file departs from its format, but still reads
    # (line, column, problem): what loaders read differently or refuse (a repeated key); read as json.load and
    # yaml.safe_load do
    problems: list[tuple[int | None, int | None, str]] = []

    kind = "training_config"

    def find(self, *keys: str) -> list[Entry]:
        """Entries whose last key is one of `keys` (any depth), in file order."""
        wanted = set(keys)
        return [e for e in self.entries if e.key in wanted]

    def under(self, *keys: str) -> list[Entry]:
        """Scalar entries at any depth below a key named one of `keys` (list items, nested dicts)."""
        wanted = {escape_pointer_part(k) for k in keys}
        return [
            e
            for e in self.entries
            if not isinstance(e.value, (dict, list))
            and any(part in wanted for part in [*e.pointer.split("/")[1:-1], e.pointer.rsplit("/", 1)[-1]])
        ]

    def first_int(self, *keys: str) -> Entry | None:
        for entry in self.find(*keys):
            if isinstance(entry.value, int) and not isinstance(entry.value, bool):
                return entry
        return None

    def named(self, role: str) -> list[NamedFile]:
        return [n for n in self.named_files if n.role == role]

    @property
    def weights_read(self) -> list[Weights]:
        """The weights of the checkpoints this config names, as far as they were read."""
        return [named.weights for named in self.named("weights") if named.weights is not None]

    @property
    def tokenizer(self) -> NamedFile | None:
        found = [n for n in self.named("tokenizer") if n.tokenizer is not None and n.tokenizer.file is not None]
        return found[0] if found else None

    @property
    def base_tokenizer(self) -> NamedFile | None:
        found = [n for n in self.named("base_tokenizer") if n.tokenizer is not None and n.tokenizer.file is not None]
        return found[0] if found else None


class _TooManyValues(Exception):
    pass


def _flatten(node: Any, pointer: str, key: str, out: list[Entry], depth: int = 0) -> None:
    if depth > 64:
        return
    if len(out) > limit("training_config_values"):  # YAML aliases can make a few lines mean billions of values
        raise _TooManyValues
    line = column = None
    if isinstance(node, dict):
        lc = getattr(node, "lc", None)
        for k, v in node.items():
            child = f"{pointer}/{escape_pointer_part(str(k))}"
            if lc is not None:
                try:
                    line, column = lc.key(k)
                    line, column = line + 1, column + 1
                except (KeyError, TypeError, AttributeError):
                    line = column = None
            if isinstance(v, (dict, list)):
                out.append(Entry(child, str(k), v, line, column))
                _flatten(v, child, str(k), out, depth + 1)
            else:
                out.append(Entry(child, str(k), v, line, column))
    elif isinstance(node, list):
        lc = getattr(node, "lc", None)
        for i, v in enumerate(node):
            child = f"{pointer}/{i}"
            if lc is not None:
                try:
                    line, column = lc.item(i)
                    line, column = line + 1, column + 1
                except (KeyError, TypeError, AttributeError, IndexError):
                    line = column = None
            if isinstance(v, (dict, list)):
                _flatten(v, child, key, out, depth + 1)
            else:
                out.append(Entry(child, key, v, line, column))


def _json_positions(doc: Any, entries: list[Entry]) -> list[Entry]:
    places = doc.positions([e.pointer for e in entries])
    return [Entry(e.pointer, e.key, e.value, *place) for e, place in zip(entries, places, strict=True)]


def parse_training_config(path: str) -> TrainingConfig:
    text = decode_utf8(path, read_bytes(path, "training_config_bytes"))
    entries: list[Entry] = []
    if path.endswith(".json"):
        notes: list[str] = []
        try:
            doc = parse_json_text(path, text)
        except ArtifactError:
            relaxed = strip_json_comments(text) or text
            relaxed = quote_json5_keys(relaxed) or relaxed
            if relaxed is text:
                raise  # nothing of JSON5 in it: the first error stands
            doc = parse_json_text(path, relaxed)  # still invalid: the error names the real problem
            notes.append(
                "not standard JSON: it has // or /* */ comments, trailing commas or unquoted keys (JSON5), which "
                "json.load rejects; read as json5 and the loaders that strip comments read it"
            )
        _flatten_within_budget(path, doc.data, entries)
        problems: list[tuple[int | None, int | None, str]] = []
        for _, problem in doc.problems:  # a NaN: Python's json reads it (the training code does), strict parsers not
            if problem.startswith("non-standard JSON constant"):
                notes.append(f"{problem}: Python's json.load reads it, strict JSON parsers refuse it")
            else:
                problems.append((None, None, problem))
        return TrainingConfig(path, "json", doc.data, _json_positions(doc, entries), notes=notes, problems=problems)
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not text.strip():
        raise ArtifactError(path, "file is empty")
    yaml = YAML(typ="rt")
    yaml.Constructor = _last_key_wins()
    repeats: list[tuple[int | None, int | None, str]] = []
    yaml.constructor.repeats = repeats
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" at line {line} column {column}" if line else ""
        raise ArtifactError(path, f"invalid YAML: {problem}{where}", line, column) from None
    except RecursionError:
        raise ArtifactError(path, "invalid YAML: nested too deeply to read") from None
    _flatten_within_budget(path, data, entries)
    suppressions = parse_suppressions(text, python=False)
    return TrainingConfig(path, "yaml", data, entries, suppressions=suppressions, problems=repeats)


@functools.cache
def _last_key_wins() -> Any:
    """ruamel's round-trip constructor reading a repeated key as yaml.safe_load does (the last value wins; ruamel
    refuses the file, or keeps the first value), each repeat recorded in `repeats`. OmegaConf and Hydra refuse
    such a file; merge keys (`<<: *base`) are not repeats."""
    from ruamel.yaml.constructor import RoundTripConstructor

    class LastKeyWins(RoundTripConstructor):
        repeats: list[tuple[int | None, int | None, str]]

        def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any) -> bool:
            if key in mapping:
                line = key_node.start_mark.line + 1
                first = mapping.lc.key(key)[0] + 1 if key in getattr(mapping.lc, "data", {}) else None
                where = f"lines {first} and {line}" if first is not None else f"line {line} and before"
                if mapping[key] == value:  # "repeated key": ART002 weighs it by whether an OmegaConf loader reads it
                    problem = (
                        f"repeated key {key!r} ({where}), the same value both times: yaml.safe_load reads it as meant"
                    )
                else:
                    problem = (
                        f"key {key!r} is given twice ({where}): yaml.safe_load keeps the last value, as ttsdoctor "
                        "reads it"
                    )
                self.repeats.append(
                    (
                        line,
                        key_node.start_mark.column + 1,
                        f"{problem}, while OmegaConf and Hydra refuse the file (found duplicate key)",
                    )
                )
            return True

    return LastKeyWins


def _flatten_within_budget(path: str, data: Any, entries: list[Entry]) -> None:
    try:
        _flatten(data, "", "", entries)
    except _TooManyValues:
        raise ArtifactError(
            path,
            "not read: once YAML aliases are expanded (an alias bomb?) it holds more values, "
            + over("training_config_values"),
        ) from None


def project_root(start: str) -> str | None:
    current = os.path.abspath(start)
    while True:
        if any(os.path.lexists(os.path.join(current, marker)) for marker in PROJECT_MARKERS) or any(
            n.startswith("requirements") and n.endswith(".txt") for n in _listdir(current)
        ):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


LOCAL_FOLDER_NAMES = frozenset(
    {"models", "model", "data", "dataset", "datasets", "checkpoints", "checkpoint", "ckpt", "ckpts", "pretrained",
     "pretrained_models", "outputs", "output", "exp", "exps", "configs", "config", "weights", "assets", "resources",
     "tokenizer", "tokenizers", "runs", "logs", "src", "scripts", "local", "tmp", "cache"}
)  # fmt: skip


def _hub_id(entry: Entry, tried: list[str]) -> bool:
    """`org/name` under a model or tokenizer key, not a local folder: a Hugging Face Hub repository id."""
    value = entry.value
    if not HUB_ID.match(value) or not any(h in entry.key.lower() for h in HUB_KEY_HINTS):
        return False
    org = value.split("/", 1)[0]
    if org.lower() in LOCAL_FOLDER_NAMES or value.lower().endswith(FILE_SUFFIXES):
        return False
    # a first component that exists beside the config or under a root makes it a local path
    return not any(os.path.isdir(c[: len(c) - len(value)] + org) for c in tried if c.endswith(value))


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _role(entry: Entry) -> str | None:
    key = entry.key.lower()
    value = entry.value
    if not isinstance(value, str) or not value or "\n" in value or len(value) > 4096:
        return None
    if _URL.match(value) or "{" in value or value.startswith("lambda"):
        return None  # a URL (https, hf, s3, or Hydra's `file://` / `pkg://` search paths), a template, code
    if re.search(r"\s", entry.key) or ": " in value:
        return None  # a sentence: a key with spaces or a value with "word: word" is prose, not a setting
    bare_word = re.fullmatch(r"[\w.-]+", value) is not None  # `tokenizer: model`: a folder only if it exists
    looks_like_file = "/" in value or "\\" in value or value.lower().endswith(FILE_SUFFIXES) or bare_word
    if not looks_like_file or not any(h in key for h in FILE_KEY_HINTS):
        return None
    if any(h in key for h in OUTPUT_KEY_HINTS):
        return None  # written by the run, not read
    if "tokenizer" in key or "vocab" in key:
        return "base_tokenizer" if any(w in key for w in ("base", "original", "orig", "source")) else "tokenizer"
    if value.lower().endswith(WEIGHT_SUFFIXES) or any(
        w in key for w in ("checkpoint", "ckpt", "pretrained", "embedding", "weights")
    ):
        return "weights"
    return "other"


def _switched_off(entries: list[Entry]) -> set[str]:
    """Pointers of paths a sibling flag turns off: coqui's `"use_d_vector_file": false` beside `d_vector_file`
    (also `use_external_speaker_embedding_file`), so the file is never read."""
    flags = {e.pointer: e.value for e in entries if e.key.startswith("use_") and isinstance(e.value, bool)}
    off = set()
    for entry in entries:
        parent = entry.pointer.rsplit("/", 1)[0]
        stem = re.sub(r"_(file|path|dir)$", "", entry.key)
        if any(flags.get(f"{parent}/use_{name}") is False for name in {entry.key, stem}):
            off.add(entry.pointer)
    return off


# A relative path into the folders a run writes (GPT-SoVITS's `s2_ckpt_dir: logs/s2/big2k1`, `sampledir: logs/`)
_RUN_FOLDER = re.compile(r"^(\./)?(logs?|runs|outputs?|wandb|tensorboard|lightning_logs)(/|$)")
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_URL = re.compile(r"^[A-Za-z][\w+.-]*://")


def is_absolute_path(value: str) -> bool:
    """Absolute here, in a home folder (`~/models/...`), or on Windows (`E:/JetBrains/...`, `C:\\Users\\...`,
    `\\\\server\\share`): a path of the machine the config was written on, never relative to the config's folder."""
    return os.path.isabs(value) or value.startswith("~") or bool(_WINDOWS_ABSOLUTE.match(value))


def _candidates(config_path: str, value: str, roots: list[str]) -> list[str]:
    """Where a training script could find a relative path: the config's folder, then each root (the project
    root, the path the user passed to `check`), in that order. A path that climbs out of a root is not tried
    against it (`../../speakers.json` from the repository's top names a file of the machine, not the project)."""
    display_dir = os.path.dirname(config_path)
    if value.startswith("~"):
        return [os.path.expanduser(value)]  # the home of whoever runs it: scripts call os.path.expanduser on it
    if is_absolute_path(value):
        return [value]
    out = [os.path.normpath(os.path.join(display_dir, value))]
    for root in roots:
        if os.path.normpath(os.path.join("top", value)).split(os.sep, 1)[0] != "top":
            continue  # lexically: `..` past the root (a link in the tree may lead elsewhere, SEC004 says so)
        # Keep the display form relative when the config path was given relatively.
        rel_root = os.path.relpath(root) if not os.path.isabs(config_path) and os.path.isabs(root) else root
        candidate = os.path.normpath(os.path.join(rel_root, value))
        if candidate not in out:
            out.append(candidate)
    return out


def _inside(path: str, root: str) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _load_named(named: NamedFile, header_only: frozenset[str] = frozenset()) -> list[ArtifactError]:
    path = named.resolved
    assert path is not None
    errors: list[ArtifactError] = []
    if named.role in ("tokenizer", "base_tokenizer"):
        if os.path.isdir(path):
            bundle = load_tokenizer_bundle(path)
        elif path.endswith(".txt"):
            bundle = load_tokenizer_bundle(os.path.dirname(path) or ".", tokenizer_file=path)
        elif path.endswith(".json") and os.path.basename(path) not in (
            "tokenizer_config.json",
            "special_tokens_map.json",
        ):
            if os.path.basename(path) == "vocab.json":
                bundle = load_tokenizer_bundle(os.path.dirname(path) or ".")
            else:
                bundle = load_tokenizer_bundle(os.path.dirname(path) or ".", tokenizer_file=path)
        else:
            return errors
        named.tokenizer = bundle
        errors += bundle.errors
    elif named.role == "weights":
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                return [ArtifactError(path, f"cannot list directory: {exc.strerror}")]
            named.weights = load_weights_in_dir(path, names, header_only)
            if named.weights is not None:
                errors += named.weights.errors
        elif path.endswith(WEIGHT_SUFFIXES):
            try:
                named.weights = Weights(files=[load_weight_file(path)])
            except ArtifactError as exc:
                errors.append(exc)
    return errors


def load_training_config(
    path: str,
    checked_root: str | None = None,
    hub_folders: Mapping[str, str] | None = None,
    header_only: frozenset[str] = frozenset(),
) -> TrainingConfig:
    """`checked_root`: the path the user passed to `check` (a repository downloaded without .git has no other
    marker of its top). `hub_folders`: Hub ids the config names, staged locally (`check --remote`); weight files
    in `header_only` hold their header only."""
    config = parse_training_config(path)
    config.project_root = project_root(os.path.dirname(os.path.abspath(path)))
    config.family = detect_config_family(
        {e.key for e in config.entries}, " ".join(str(e.value) for e in config.entries if isinstance(e.value, str))
    )
    roots = [r for r in (config.project_root, checked_root) if r is not None]
    inside_roots = [os.path.dirname(os.path.abspath(path)), *roots]
    switched_off = _switched_off(config.entries)
    for entry in config.entries:
        role = _role(entry)
        if role is None or entry.pointer in switched_off:
            continue
        tried = _candidates(path, entry.value, roots)
        resolved = next((c for c in tried if os.path.exists(c)), None)
        if resolved is None and "/" not in entry.value and not entry.value.lower().endswith(FILE_SUFFIXES):
            continue  # a bare word that names nothing here is a setting ("bpe", "char"), not a path
        if resolved is None and _RUN_FOLDER.match(entry.value):
            continue  # a folder the run writes (read back only when resuming), absent before the first run
        named = NamedFile(entry, role, resolved, tuple(tried))
        config.named_files.append(named)
        if resolved is None:
            named.remote = _hub_id(entry, tried)
            if named.remote and hub_folders and entry.value in hub_folders:
                named.resolved, named.remote = hub_folders[entry.value], False
                config.errors += _load_named(named, header_only)
        elif not is_absolute_path(entry.value) and not any(_inside(resolved, root) for root in inside_roots):
            named.outside_project = True
        else:
            config.errors += _load_named(named)
    return config


TRAINING_KEYS = frozenset(
    {
        "n_vocab",
        "vocab_size",
        "text_vocab_size",
        "freeze_until_index",
        "trainable_token_indices",
        "original_vocab_size",
        "base_vocab_size",
        "tokenizer",
        "tokenizer_path",
        "pretrained_model",
        "resp_levels",
        "audio_backend",
        "generation_config",
        "max_text_tokens",
        "max_speech_tokens",
        "learning_rate",
        "batch_size",
        "epochs",
        "num_epochs",
        "max_steps",
        "gradient_accumulation_steps",
        "output_attentions",
        "attn_implementation",
        "stage_args",  # vLLM-Omni stage configs (serving rules read their default_sampling_params)
        "default_sampling_params",  # and vLLM-Omni's later deploy YAMLs (`pipeline:` and `stages:`)
    }
)


def looks_like_training_config(path: str) -> bool:
    """Cheap content sniff for files found while walking a tree (explicit paths skip this)."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO named train.yaml would block the read forever
            return False
        with open(path, "rb") as fh:
            head = fh.read(65536).decode("utf-8", errors="replace")
    except OSError:
        return False
    if is_own_output(head) or _TRANSLATIONS.search(path.replace(os.sep, "/")):
        return False
    return _TRAINING_KEY.search(head) is not None


# A UI's translation tables (GPT-SoVITS's tools/i18n/locale/en_US.json maps "batch_size" to "batch_size" among its
# sentences): words of a training form, never a config
_TRANSLATIONS = re.compile(r"(^|/)(i18n|locales?|translations?)/[^/]+\.json$", re.IGNORECASE)


# a training key as a key: YAML `key:` at the start of a line (indented, or in a list), JSON `"key":` anywhere;
# not the word inside a value or a sentence (an i18n file's "Number of epochs:", xtts-webui's locales)
_TRAINING_KEY = re.compile(
    r'(?m)(?:^[ \t-]*(?:{keys})[ \t]*:|"(?:{keys})"[ \t]*:)'.format(keys="|".join(sorted(TRAINING_KEYS)))
)


_OWN_OUTPUT = re.compile(
    r'^\s*\{\s*"(?:version"\s*:\s*\d+\s*,\s*"findings"|\$schema"\s*:\s*"[^"]*sarif[^"]*"|version"\s*:\s*1\s*,\s*"findings")'
)


def is_own_output(head: str) -> bool:
    """ttsdoctor's own JSON report, baseline or SARIF file: never read as an input."""
    return _OWN_OUTPUT.match(head) is not None
