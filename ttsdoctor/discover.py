"""Paths -> targets: model directories, training configs and Python files.

A path can be a model directory, one file (mapped to what it belongs to: a tokenizer_config.json
to its model directory, so cross-file checks still run), or a whole repository tree.
Paths stay as the user wrote them: relative stays relative.
"""

from __future__ import annotations

import os

import msgspec

from ttsdoctor.artifacts.links import leads_outside
from ttsdoctor.artifacts.model_dir import MODEL_FILES, is_model_dir
from ttsdoctor.artifacts.training_config import looks_like_training_config
from ttsdoctor.artifacts.weights import WEIGHT_SUFFIXES

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "env",
        ".env",
        "__pycache__",
        "node_modules",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "site-packages",
        "build",
        "dist",
        ".ttsdoctor-backups",
        ".idea",
        ".vscode",
        ".eggs",
        "wandb",
        "runs",
        "mlruns",
    }
)
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
MODEL_DIR_FILE_SUFFIXES = (*WEIGHT_SUFFIXES, ".safetensors.index.json")


class Target(msgspec.Struct, frozen=True):
    kind: str  # "model_dir" | "gguf" | "training_config" | "source" | "missing" | "unsupported" | "unreadable"
    # | "link" (a symbolic link in a walked tree that leads outside it)
    path: str
    # compared, hashed and sorted by (kind, path) only:
    root: str | None = None  # the path the user passed, a root for named files
    # weight files of the target that hold their header and no data (a Hub repository read by range requests)
    header_only: frozenset[str] = frozenset()
    # training configs: the Hub ids they name, staged as local folders (`check --remote`)
    hub_folders: tuple[tuple[str, str], ...] = ()

    def __eq__(self, other: object) -> bool:
        return (self.kind, self.path) == (other.kind, other.path) if isinstance(other, Target) else NotImplemented

    def __hash__(self) -> int:
        return hash((self.kind, self.path))

    def __lt__(self, other: Target) -> bool:
        return (self.kind, self.path) < (other.kind, other.path)


def _is_model_file(name: str) -> bool:
    return name in MODEL_FILES or name in ("vocab.json", "vocab.txt") or name.endswith(MODEL_DIR_FILE_SUFFIXES)


def _file_target(path: str) -> Target:
    name = os.path.basename(path)
    parent = os.path.dirname(path) or "."
    if _is_model_file(name):
        return Target("model_dir", parent)
    if name.endswith((".py", ".ipynb")):
        return Target("source", path)
    if name.endswith(".gguf"):
        return Target("gguf", path)
    if name.endswith(CONFIG_SUFFIXES):
        return Target("training_config", path)
    return Target("unsupported", path)


def _own_output(path: str) -> bool:
    import stat

    from ttsdoctor.artifacts.training_config import is_own_output

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return is_own_output(fh.read(4096).decode("utf-8", errors="replace"))
    except OSError:
        return False


def _walk(root: str) -> list[Target]:
    return [Target(t.kind, t.path, root) for t in _walk_tree(root)]


def _walk_tree(root: str) -> list[Target]:
    found: list[Target] = []
    unreadable: list[str] = []
    for walked, dirnames, filenames in os.walk(
        root, followlinks=False, onerror=lambda exc: unreadable.append(exc.filename or root)
    ):
        directory = os.path.normpath(walked)  # "./models" -> "models": paths as a user would write them
        if "pyvenv.cfg" in filenames and walked != root:
            dirnames[:] = []  # a virtualenv under any name (a committed `tts/`): installed code, not the project's
            continue
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        )
        filenames.sort()
        for name in dirnames + filenames:  # os.walk does not follow links; those leading out are reported
            if leads_outside(os.path.join(directory, name), root):
                found.append(Target("link", os.path.join(directory, name)))
        # a directory named config.json is still a (broken) model file: the loader reports it
        if is_model_dir(filenames + [d for d in dirnames if _is_model_file(d)]):
            found.append(Target("model_dir", directory))
        for name in filenames:
            path = os.path.join(directory, name)
            if name.endswith((".py", ".ipynb")):
                found.append(Target("source", path))
            elif name.endswith(".gguf"):
                found.append(Target("gguf", path))
            elif (
                name.endswith(CONFIG_SUFFIXES)
                and not _is_model_file(name)
                and not name.startswith(".")
                and "index" not in name
                and looks_like_training_config(path)
            ):
                found.append(Target("training_config", path))
    found += [Target("unreadable", os.path.normpath(path)) for path in unreadable]  # never skipped silently
    return found


def discover(paths: list[str], hook: bool = False) -> list[Target]:
    """Targets for the given paths. `hook`: the paths are files a pre-commit hook passes; files that are not
    ours (a package.json, a workflow YAML) are skipped silently instead of reported as unsupported."""
    targets: list[Target] = []
    for raw in paths:
        path = os.path.normpath(raw) if raw not in ("", ".") else "."
        if not os.path.lexists(path):
            if not hook:  # a file deleted by the commit is not an error
                targets.append(Target("missing", path))
        elif os.path.isdir(path):
            targets += _walk(path)
        else:
            target = _file_target(path)
            if target.kind == "training_config":
                if _own_output(path):
                    target = Target("unsupported", path)
                else:
                    target = Target(target.kind, target.path, os.path.dirname(path) or ".")
            if hook and (
                target.kind == "unsupported"
                or (target.kind == "training_config" and not looks_like_training_config(path))
            ):
                continue
            targets.append(target)
    return list(dict.fromkeys(targets))
