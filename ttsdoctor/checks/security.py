"""SEC: code that loading a model directory or a config would execute."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ttsdoctor.artifacts.links import OutsideLink
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.pickle_scan import UNKNOWN
from ttsdoctor.artifacts.tensors import SAFE_PICKLE_GLOBALS, WeightFile
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.checks.artifacts import weights_of
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import ModelOrConfigRule, Rule

# Modules whose callables can run commands, code, or touch files and the network when a pickle calls them.
DANGEROUS_MODULES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "shutil",
        "socket",
        "runpy",
        "importlib",
        "imp",
        "zipimport",
        "pty",
        "webbrowser",
        "code",
        "codeop",
        "pickle",
        "_pickle",
        "cPickle",
        "dill",
        "cloudpickle",
        "joblib",
        "shelve",
        "marshal",
        "ctypes",
        "requests",
        "urllib",
        "urllib2",
        "urllib3",
        "httplib",
        "http",
        "httpx",
        "aiohttp",
        "ftplib",
        "smtplib",
        "telnetlib",
        "xmlrpc",
        "ssl",
        "asyncio",
        "multiprocessing",
        "threading",
        "_thread",
        "concurrent",
        "signal",
        "tempfile",
        "io",
        "_io",
        "timeit",
        "cProfile",
        "profile",
        "pdb",
        "bdb",
        "trace",
        "doctest",
        "pydoc",
        "venv",
        "ensurepip",
        "pip",
        "setuptools",
        "distutils",
        "types",
        "operator",
        "commands",
        "popen2",
        "platform",
        "sysconfig",
        "pkgutil",
        "inspect",
        "gc",
        "paramiko",
        "sh",
        "plumbum",
    }
)
DANGEROUS_QUALIFIED = (
    "torch.hub",
    "torch.jit",
    "torch._inductor",
    "torch._dynamo",
    "torch.utils.cpp_extension",
    "torch.ops",
    "torch.serialization.load",
    "torch.load",
    "torch.save",
    "numpy.load",
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.lib.npyio",
    "pathlib.Path.write",
    "pathlib.PosixPath.write",
)
DANGEROUS_BUILTINS = frozenset(
    {
        "eval", "exec", "execfile", "compile", "open", "file", "getattr", "setattr", "delattr", "__import__",
        "globals", "locals", "vars", "breakpoint", "input", "apply", "reload", "help", "memoryview", "exit", "quit",
    }
)  # fmt: skip


def _dangerous(module: str, name: str) -> bool:
    """Whether importing and calling this global can do harm by itself (commands, code, files, network)."""
    if module == UNKNOWN or name == UNKNOWN or name.startswith("extension code"):
        return True  # a name only running the pickle would reveal
    if module.split(".")[0] in DANGEROUS_MODULES:
        return True
    if module in ("builtins", "__builtin__"):
        return name.split(".")[0] in DANGEROUS_BUILTINS or "." in name
    qualified = f"{module}.{name}"
    if qualified.startswith(DANGEROUS_QUALIFIED):
        return True
    # a dotted name walks attributes (protocol 4): Class.method reaches anything the class can reach
    return "." in name and (module, name) not in SAFE_PICKLE_GLOBALS


def _global_name(module: str, name: str) -> str:
    if name.startswith("extension code"):
        return f"a global registered under copyreg {name}"
    if UNKNOWN in (module, name):
        return "a global whose name is computed while loading"
    return f"{module}.{name}"


def _where(wf: WeightFile) -> str:
    members = [m for m in wf.pickle_members if m != "byte 0"]
    return f" (pickles read: {', '.join(members)})" if len(members) > 1 else ""


class UnsafePickle(ModelOrConfigRule):
    id = "SEC001"
    name = "unsafe-pickle"
    summary = "A pickle checkpoint that imports more than tensor-rebuilding globals (it can run code on load)"
    severity = Severity.ERROR

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        for wf, loaded in _pickle_files(target):
            unsafe = wf.unsafe_globals
            if not unsafe:
                continue
            dangerous = [g for g in unsafe if _dangerous(*g)]
            evidence = {"globals": [_global_name(m, n) for m, n in unsafe], "pickles": list(wf.pickle_members)}
            if dangerous:
                names = ", ".join(_global_name(m, n) for m, n in dangerous[:4])
                yield self.finding(
                    f"{os.path.basename(wf.path)} imports {names}: torch.load without weights_only "
                    f"runs this code when the checkpoint is loaded{_where(wf)}; do not load it, or convert a "
                    "trusted copy to safetensors",
                    wf.path,
                    evidence=evidence,
                )
            elif loaded:  # pickles beside the weights (optimizer.pt, training_args.bin) hold objects by design
                names = ", ".join(f"{m}.{n}" for m, n in unsafe[:4])
                yield self.finding(
                    f"{os.path.basename(wf.path)} imports {names}, outside the tensor allow-list: "
                    "torch.load(weights_only=True) (the default since torch 2.6) refuses it, and loading it "
                    "without that flag trusts the file; prefer safetensors",
                    wf.path,
                    evidence=evidence,
                    severity=Severity.WARNING,
                )


def _pickle_files(target: ModelDir | TrainingConfig) -> list[tuple[WeightFile, bool]]:
    """(pickle file, whether it is the model's weights) for every pickle the target read."""
    out = []
    for w in weights_of(target):
        out += [(wf, True) for wf in w.files if wf.format not in ("safetensors", "gguf")]
        out += [(wf, False) for wf in w.extras]
    return out


class AmbiguousPickle(ModelOrConfigRule):
    id = "SEC005"
    name = "ambiguous-checkpoint"
    summary = "A checkpoint in which torch and other tools read different pickles (duplicates, a zip behind a pickle)"
    severity = Severity.ERROR

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        for wf, _loaded in _pickle_files(target):
            for ambiguity in wf.ambiguities:
                yield self.finding(
                    f"{os.path.basename(wf.path)}: {ambiguity}; torch.save never writes this: treat the file as "
                    "crafted (every candidate pickle was vetted by SEC001)",
                    wf.path,
                    evidence={"pickles": list(wf.pickle_members)},
                )


class RemoteCode(Rule):
    id = "SEC002"
    name = "remote-code"
    summary = "A model directory whose config needs trust_remote_code (auto_map custom code)"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
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

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        for entry in target.entries:
            if isinstance(entry.value, str) and _evaluated(entry.value):
                yield self._found(entry.value, target.path, entry.pointer, entry.line, entry.column)

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
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
    summary = "A training config names a file outside its project, or a link in the tree leads outside it"
    severity = Severity.WARNING

    def check_link(self, target: OutsideLink) -> Iterator[Finding]:
        if not target.exists:
            # vendored Matcha-TTS commits `data -> /home/<author>/...`: nothing is read through it here
            yield self.finding(
                f"{os.path.basename(target.path)} is a symbolic link to {target.points_to!r}, which does not "
                "exist on this machine: nothing was read through it (a link from its author's machine?)",
                target.path,
                evidence={"points_to": target.points_to},
                severity=Severity.INFO,
            )
            return
        if target.is_dir:
            what = "a folder outside the checked tree: not followed, nothing in it was checked"
        else:
            what = "a file outside the checked tree: read through the link, never written through it by fix"
        yield self.finding(
            f"{os.path.basename(target.path)} is a symbolic link to {target.points_to!r}, {what}",
            target.path,
            evidence={"points_to": target.points_to},
        )

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
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
