"""SEC: code that loading a model directory or a config would execute."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.artifacts.weights import WeightFile
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import Rule

DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "shutil",
    "socket",
    "runpy",
    "importlib",
    "pty",
    "webbrowser",
    "code",
    "pickle",
    "marshal",
    "ctypes",
    "requests",
    "urllib",
    "http",
    "asyncio",
    "multiprocessing",
    "pathlib",
    "tempfile",
    "signal",
)
DANGEROUS_BUILTINS = (
    "eval",
    "exec",
    "compile",
    "open",
    "getattr",
    "setattr",
    "__import__",
    "globals",
    "locals",
    "breakpoint",
    "input",
    "delattr",
    "vars",
    "apply",
)


def _dangerous(module: str, name: str) -> bool:
    root = module.split(".")[0]
    if root in DANGEROUS_MODULES:
        return True
    return root in ("builtins", "__builtin__") and name in DANGEROUS_BUILTINS


def _weight_files(target: Any) -> list[WeightFile]:
    if isinstance(target, ModelDir):
        return target.weights.files if target.weights is not None else []
    out = []
    for named in target.named("weights"):
        if named.weights is not None:
            out += named.weights.files
    return out


class UnsafePickle(Rule):
    id = "SEC001"
    name = "unsafe-pickle"
    summary = "A pickle checkpoint that imports more than tensor-rebuilding globals (it can run code on load)"
    severity = Severity.ERROR
    targets = ("model_dir", "training_config")

    def check(self, target: Any) -> Iterator[Finding]:
        for wf in _weight_files(target):
            if wf.format == "safetensors":
                continue
            unsafe = wf.unsafe_globals
            if not unsafe:
                continue
            dangerous = [g for g in unsafe if _dangerous(*g)]
            names = ", ".join(f"{m}.{n}" for m, n in (dangerous or unsafe)[:4])
            if dangerous:
                yield self.finding(
                    f"{os.path.basename(wf.path)} imports {names}: torch.load without weights_only "
                    "runs this code when the checkpoint is loaded; do not load it, or convert a "
                    "trusted copy to safetensors",
                    wf.path,
                    evidence={"globals": [f"{m}.{n}" for m, n in unsafe]},
                )
            else:
                yield self.finding(
                    f"{os.path.basename(wf.path)} imports {names}, outside the tensor allow-list: "
                    "torch.load(weights_only=True) refuses it, and loading it without that flag "
                    "trusts the file; prefer safetensors",
                    wf.path,
                    evidence={"globals": [f"{m}.{n}" for m, n in unsafe]},
                    severity=Severity.WARNING,
                )


class RemoteCode(Rule):
    id = "SEC002"
    name = "remote-code"
    summary = "A model directory whose config needs trust_remote_code (auto_map custom code)"
    severity = Severity.WARNING
    targets = ("model_dir",)

    def check(self, target: ModelDir) -> Iterator[Finding]:
        docs = [target.config, target.tokenizer.config if target.tokenizer is not None else None]
        for doc in docs:
            if doc is None or not isinstance(doc.data.get("auto_map"), (dict, list)):
                continue
            auto_map = doc.data["auto_map"]
            refs = auto_map.values() if isinstance(auto_map, dict) else auto_map
            modules = sorted({str(r).split("--")[-1].split(".")[0] + ".py" for r in _flatten_refs(refs)})
            present = [m for m in modules if m in target.names]
            line, column = doc.position("/auto_map")
            where = (
                f"runs {', '.join(present)} from this directory"
                if present
                else (f"downloads and runs {', '.join(modules) or 'code'} from the hub")
            )
            yield self.finding(
                f"auto_map in {os.path.basename(doc.path)}: loading needs trust_remote_code=True, which "
                f"{where}; read that code before trusting it (ttsdoctor never passes it unless "
                "asked)",
                doc.path,
                "/auto_map",
                line,
                column,
                {"modules": modules},
            )


def _flatten_refs(refs: Any) -> Iterator[str]:
    for ref in refs:
        if isinstance(ref, (list, tuple)):
            yield from (str(r) for r in ref if r)
        elif ref:
            yield str(ref)


EVALUATED_MARKERS = ("lambda ", "lambda:", "__import__", "eval(", "exec(", "os.system", "subprocess.")


class EvaluatedString(Rule):
    id = "SEC003"
    name = "evaluated-string"
    summary = "A config string that a loader evaluates as Python (lambda, eval, __import__)"
    severity = Severity.WARNING
    targets = ("model_dir", "training_config")

    def check(self, target: Any) -> Iterator[Finding]:
        if isinstance(target, TrainingConfig):
            for entry in target.entries:
                if isinstance(entry.value, str) and _evaluated(entry.value):
                    yield self._found(entry.value, target.path, entry.pointer, entry.line, entry.column)
            return
        for doc in (target.config, target.generation_config):
            if doc is None:
                continue
            for pointer, value in _strings(doc.data, ""):
                if _evaluated(value):
                    yield self._found(value, doc.path, pointer, *doc.position(pointer))

    def _found(self, value: str, path: str, pointer: str, line: int | None, column: int | None) -> Finding:
        return self.finding(
            f"{pointer[1:]} holds Python code ({value[:60]!r}): a loader that evaluates it runs "
            "whatever the file says; replace it with data",
            path,
            pointer,
            line,
            column,
        )


def _evaluated(value: str) -> bool:
    stripped = value.strip()
    return any(stripped.startswith(m) or (m != "lambda " and m in stripped) for m in EVALUATED_MARKERS)


def _strings(node: Any, pointer: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    from ttsdoctor.artifacts.jsonfile import escape_pointer_part

    if depth > 32:
        return
    if isinstance(node, str):
        yield pointer, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{pointer}/{escape_pointer_part(key)}", depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{pointer}/{i}", depth + 1)


class PathEscape(Rule):
    id = "SEC004"
    name = "path-escape"
    summary = "A training config names a file outside its project (../../etc/passwd)"
    severity = Severity.WARNING
    targets = ("training_config",)

    def check(self, target: TrainingConfig) -> Iterator[Finding]:
        for named in target.named_files:
            if named.outside_project:
                entry = named.entry
                yield self.finding(
                    f"{entry.key} names {entry.value!r}, which climbs out of the project: ttsdoctor "
                    f"did not read {named.resolved!r}; a training run would",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                )
