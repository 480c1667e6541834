"""ART: artifacts that cannot be read, and values of the wrong type."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ttsdoctor.artifacts.errors import (
    AbsentShards,
    ArtifactError,
    BrokenTarget,
    EmptyWeights,
    LfsPointer,
    MissingContent,
    human_bytes,
)
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.tensors import WeightFile, Weights
from ttsdoctor.artifacts.training_config import NamedFile, TrainingConfig, is_absolute_path
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import Rule


class _LoadErrors(Rule):
    """A rule over the errors every loaded target carries, whatever its kind: it defines `check_errors`."""

    def check_model(self, model: ModelDir) -> Iterator[Finding]:
        return self.check_errors(model.errors)

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        return self.check_errors(config.errors)

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        return self.check_errors(source.errors)

    def check_broken(self, broken: BrokenTarget) -> Iterator[Finding]:
        return self.check_errors(broken.errors)

    def check_errors(self, errors: list[ArtifactError]) -> Iterator[Finding]:
        raise NotImplementedError


class UnreadableArtifact(_LoadErrors):
    id = "ART001"
    name = "unreadable-artifact"
    summary = "A file that ttsdoctor (and the training or loading code) cannot read"
    severity = Severity.ERROR
    marks_unreadable = True

    def check_model(self, model: ModelDir) -> Iterator[Finding]:
        yield from self.check_errors(model.errors)
        for error in _weights_a_config_describes(model):
            yield self.finding(
                f"{error.problem}; the model config.json describes cannot load from it",
                error.path,
            )
        yield from self._damaged(_all_weight_files(model))

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        yield from self.check_errors(config.errors)
        yield from self._damaged(_all_weight_files(config))

    def check_errors(self, errors: list[ArtifactError]) -> Iterator[Finding]:
        for error in errors:
            if not isinstance(error, MissingContent):
                yield self.finding(error.problem, error.path, line=error.line, column=error.column)

    def _damaged(self, files: list[WeightFile]) -> Iterator[Finding]:
        for wf in files:
            for problem in wf.damaged:
                yield self.finding(f"{os.path.basename(wf.path)}: {problem}", wf.path)


# A shard of a sharded checkpoint: model-00001-of-00162.safetensors, pytorch_model-00002-of-00003.bin
_SHARD_NAME = re.compile(r"-\d{5}-of-\d{5}\.[A-Za-z]+$")

# What could not be checked when a file of this kind is missing its content, for the ART004 message.
_RULES_THAT_READ = (
    (
        (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".gguf", ".safetensors.index.json"),
        "the embedding, head and security rules (VOC, COD002, POS001, SEC001)",
    ),
    (
        ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer_config.json"),
        "the tokenizer rules (TOK, VOC001, COD003)",
    ),
    ((".json", ".yaml", ".yml"), "the rules that read this config"),
)


def _weights_a_config_describes(model: ModelDir) -> list[EmptyWeights]:
    """Empty weight files in a folder whose config.json describes the model: its weights are missing, an error
    (ART001). Anywhere else an empty weight file is as likely a placeholder committed for an output (ART004)."""
    if model.config is None:
        return []
    return [error for error in model.errors if isinstance(error, EmptyWeights)]


class MissingContentFile(_LoadErrors):
    id = "ART004"
    name = "missing-content"
    summary = (
        "A Git LFS pointer file (a clone without `git lfs pull`) or an empty weight file where weights, a "
        "tokenizer or a config belong"
    )
    severity = Severity.WARNING

    def check_model(self, model: ModelDir) -> Iterator[Finding]:
        described = _weights_a_config_describes(model)
        return self.check_errors([error for error in model.errors if error not in described])

    def check_errors(self, errors: list[ArtifactError]) -> Iterator[Finding]:
        missing = [error for error in errors if isinstance(error, MissingContent)]
        shards = sorted(
            (e for e in missing if isinstance(e, LfsPointer) and _SHARD_NAME.search(os.path.basename(e.path))),
            key=lambda e: e.path,
        )
        grouped = shards if len(shards) > 1 else []
        for error in missing:
            if error in grouped:
                continue
            skipped = next(
                (what for ends, what in _RULES_THAT_READ if error.path.endswith(ends)), "the rules that read it"
            )
            yield self.finding(
                f"{error.problem}; {skipped} could not run on it",
                error.path,
                evidence=_missing_evidence(error),
            )
        if grouped:
            yield self._lfs_shards(grouped)

    def _lfs_shards(self, shards: list[LfsPointer]) -> Finding:
        """One finding for a sharded checkpoint cloned without `git lfs pull` (Reflection-Llama-3.1-70B: 162 shards),
        not one per shard."""
        total = sum(e.object_size or 0 for e in shards)
        names = [os.path.basename(e.path) for e in shards]
        shown = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
        return self.finding(
            f"{len(shards)} weight shards ({shown}) are Git LFS pointers (to objects of {human_bytes(total)} in "
            "total), not the files themselves: run `git lfs pull`; the embedding, head and security rules (VOC, "
            "COD002, POS001, SEC001) could not run on them",
            shards[0].path,
            evidence={"shards": len(shards), "object_size": total},
        )


def _missing_evidence(error: MissingContent) -> dict[str, object]:
    if isinstance(error, LfsPointer):
        return {"object_size": error.object_size}
    if isinstance(error, AbsentShards):
        return {"absent_shards": error.shards}
    return {"size": 0}


class IncompleteRead(Rule):
    id = "ART005"
    name = "incomplete-read"
    summary = "A checkpoint that could be read only in part: what was not read was not checked"
    severity = Severity.WARNING

    def check_model(self, model: ModelDir) -> Iterator[Finding]:
        return self._incomplete(_all_weight_files(model))

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        return self._incomplete(_all_weight_files(config))

    def _incomplete(self, files: list[WeightFile]) -> Iterator[Finding]:
        for wf in files:
            for problem in wf.unchecked:
                yield self.finding(
                    f"{os.path.basename(wf.path)}: {problem}; the vocabulary rules saw only the tensors read "
                    f"before it ({len(wf.tensors)})",
                    wf.path,
                    evidence={"problem": problem, "tensors_read": len(wf.tensors)},
                )


def weights_of(target: ModelDir | TrainingConfig) -> list[Weights]:
    """The weights a target read: a model folder's own, or those a training config names."""
    return target.weights_read


def _all_weight_files(target: ModelDir | TrainingConfig) -> list[WeightFile]:
    """Every weight file a target read: the weights and the pickles beside them."""
    return [wf for w in weights_of(target) for wf in (*w.files, *w.extras)]


class MalformedValue(Rule):
    id = "ART002"
    name = "malformed-value"
    summary = "A config value of the wrong type, a duplicate key or a non-standard JSON constant"
    severity = Severity.ERROR

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        for note in config.notes:
            yield self.finding(note, config.path, severity=Severity.INFO)
        hydra = _hydra_config(config)
        for line, column, problem in config.problems:
            # the same value twice: json.load and yaml.safe_load read it as meant, OmegaConf / Hydra refuse the file
            harmless = problem.startswith("repeated key") and not hydra
            if hydra and problem.startswith("repeated key"):
                problem += ", and this file is a Hydra config (a defaults list, _target_ keys): the run stops on it"
            yield self.finding(
                problem, config.path, line=line, column=column, severity=Severity.INFO if harmless else Severity.WARNING
            )

    def check_model(self, model: ModelDir) -> Iterator[Finding]:
        for doc in (model.config, model.generation_config):
            if doc is None:
                continue
            data = doc.data if isinstance(doc.data, dict) else {}
            transformers_file = doc is model.generation_config or "model_type" in data or "architectures" in data
            for pointer, problem in doc.problems:
                line, column = doc.position(pointer) if pointer else (None, None)
                if problem.startswith(("not standard JSON", "repeated key")):
                    severity = Severity.INFO  # comments a toolkit's loader strips; a key given twice the same
                elif problem.startswith("non-standard") and not transformers_file:
                    # a toolkit's own config.json (Coqui writes max_text_len = float("inf") as Infinity): its Python
                    # loader reads it; only servers parsing a transformers config.json strictly meet it
                    problem += (
                        ": Python's json.load reads it, as this file's own toolkit does; strict parsers refuse it"
                    )
                    severity = Severity.INFO
                elif problem.startswith(("duplicate key", "non-standard", "comments")):
                    severity = Severity.WARNING
                else:
                    severity = Severity.ERROR
                yield self.finding(problem, doc.path, pointer or None, line, column, severity=severity)


def _hydra_config(config: TrainingConfig) -> bool:
    """Whether a config is written for Hydra / OmegaConf, which refuse any repeated key: a top-level `defaults:` list
    or `_target_` keys."""
    return config.format == "yaml" and (
        (isinstance(config.data, dict) and isinstance(config.data.get("defaults"), list))
        or bool(config.find("_target_"))
    )


class MissingNamedFile(Rule):
    id = "ART003"
    name = "missing-named-file"
    summary = "A training config names a tokenizer, checkpoint or other file that is not there"
    severity = Severity.WARNING

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        target = config
        for named in target.named_files:
            if named.resolved is not None or named.remote:
                continue  # found, or a Hub id (a remote reference, for `--remote` checks)
            entry = named.entry
            tried = ", ".join(named.tried)
            evidence = {"value": entry.value, "tried": list(named.tried)}
            link = next((found for found in map(_dangling_link, named.tried) if found is not None), None)
            if link is not None:
                where, points_to = link
                yield self.finding(
                    f"{entry.key} names {entry.value!r}, but {where} is a link to {points_to}, which is not on this "
                    "machine (a link made on its author's machine); the rules that would read it did not run",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                    {**evidence, "link": where, "points_to": points_to},
                    severity=Severity.INFO,
                )
                continue
            near = _near_miss(named)
            if near is not None:
                folder, present = near
                listing = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
                yield self.finding(
                    f"{entry.key} names {entry.value!r}, which is not in {folder} (it holds {listing}): the training "
                    "run will fail, or silently fall back to another file",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                    {**evidence, "folder": folder},
                )
                continue
            if _PLACEHOLDER.search(entry.value):
                why = "a placeholder to fill in"
            elif is_absolute_path(entry.value):
                why = "an absolute path of another machine?"
            else:
                why = "made by a preprocessing or download step?"
            yield self.finding(
                f"{entry.key} names {entry.value!r}, which is not here (tried {tried}; {why}); the rules that would "
                "read it did not run",
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                evidence,
                severity=Severity.INFO,
            )


# A path written as an instruction (VoxCPM's `/path/to/VoxCPM1.5/`, `<your_dataset>`, `path/to/your/model`)
_PLACEHOLDER = re.compile(r"(^|[/\\])path[/\\]to[/\\]|<[^<>]+>|\byour[_-]", re.IGNORECASE)


# Keys naming what a run produces: data made by preprocessing, caches, logs, outputs, and state the program itself
# writes (wallaceblaia/ValeTTS-Colab's `dynamic_config_path`, which its LLM monitor creates and rewrites)
PRODUCED_KEY_HINTS = (
    "data", "dataset", "manifest", "corpus", "wav", "audio", "cache", "log", "output", "proto",
    "dynamic", "state", "history", "backup", "save", "export", "result", "report",
)  # fmt: skip


def _dangling_link(path: str) -> tuple[str, str] | None:
    """The first component of `path` that is a symbolic link leading nowhere here, and where it points (text2Mol's
    `models/MolT5-Large-Caption2SMILES -> /root/autodl-tmp/...`, committed from the machine it was made on)."""
    parts = os.path.normpath(path).split(os.sep)
    for end in range(1, len(parts) + 1):
        prefix = os.sep.join(parts[:end]) or os.sep
        if os.path.islink(prefix) and not os.path.exists(prefix):
            try:
                return prefix, os.readlink(prefix)
            except OSError:
                return prefix, "?"
    return None


def _near_miss(named: NamedFile) -> tuple[str, list[str]] | None:
    """The folder a relative path names, when it exists and holds files like the missing one (the same suffix,
    or a close name): then the missing file is very likely a typo or a stale name, not something a later step
    creates."""
    import difflib

    value = named.entry.value
    if is_absolute_path(value) or any(h in named.entry.key.lower() for h in PRODUCED_KEY_HINTS):
        return None
    if not os.path.dirname(value.rstrip("/")):
        return None
    wanted = os.path.basename(value.rstrip("/"))
    suffix = os.path.splitext(wanted)[1].lower()
    for candidate in named.tried:
        folder = os.path.dirname(candidate.rstrip("/"))
        try:
            present = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        except OSError:
            continue
        alike = [n for n in present if (suffix and n.lower().endswith(suffix))]
        alike += difflib.get_close_matches(wanted, present, n=3, cutoff=0.75)
        if alike:
            return folder, present
    return None


class NotChecked(Rule):
    id = "ART006"
    name = "not-checked"
    summary = (
        "A Python file or notebook cell that was not checked: newer grammar (info), a syntax error or an empty "
        "notebook (warning)"
    )
    severity = Severity.INFO

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        for line, message, broken in source.notices:
            yield self.finding(message, source.path, line=line, severity=Severity.WARNING if broken else Severity.INFO)
