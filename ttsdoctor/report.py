"""Findings -> text or JSON. The only place (with the CLI and the TUI) that talks to the user."""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

from ttsdoctor.engine import CheckResult
from ttsdoctor.finding import Applicability, Finding, Severity

JSON_VERSION = 1
_COLOURS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m", Severity.INFO: "\033[36m"}
_BOLD, _DIM, _RESET = "\033[1m", "\033[2m", "\033[0m"


def use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def location_text(finding: Finding) -> str:
    loc = finding.location
    if loc.cell is not None:  # a notebook: the cell, then the line and column in it
        return f"{loc.path}:cell {loc.cell}:{loc.line or 1}:{loc.column or 1}"
    if loc.line is not None:
        return f"{loc.path}:{loc.line}:{loc.column or 1}"
    if loc.pointer:
        return f"{loc.path}#{loc.pointer}"
    return loc.path


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else ("es" if word.endswith("ch") else "s"))


def target_summary(result: CheckResult) -> dict[str, Any]:
    kinds = {"model_dir": 0, "training_config": 0, "source": 0}
    for loaded in result.loaded:
        if loaded.kind in kinds:
            kinds[loaded.kind] += 1
    return kinds


def families(result: CheckResult) -> list[tuple[str, str, str | None]]:
    return [
        (m.path, m.family.name, m.family_evidence)
        for m in result.loaded
        if m.kind in ("model_dir", "training_config") and m.family is not None
    ]


def summary(result: CheckResult) -> dict[str, Any]:
    kinds = target_summary(result)
    return {
        "errors": result.count(Severity.ERROR),
        "warnings": result.count(Severity.WARNING),
        "infos": result.count(Severity.INFO),
        "fixable": sum(
            1 for f in result.findings if f.fix is not None and f.fix.applicability is not Applicability.DISPLAY_ONLY
        ),
        "fixable_unsafe": sum(
            1 for f in result.findings if f.fix is not None and f.fix.applicability is Applicability.UNSAFE
        ),
        "model_dirs": kinds["model_dir"],
        "training_configs": kinds["training_config"],
        "sources": kinds["source"],
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    loc = finding.location
    return {
        "code": finding.rule_id,
        "name": finding.rule_name,
        "severity": finding.severity.value,
        "message": finding.message,
        "path": loc.path,
        "line": loc.line,
        "column": loc.column,
        "pointer": loc.pointer,
        **({"cell": loc.cell} if loc.cell is not None else {}),
        "evidence": finding.evidence,
        "fix": None
        if finding.fix is None
        else {"title": finding.fix.title, "applicability": finding.fix.applicability.value},
    }


def write_json(result: CheckResult, stream: TextIO) -> None:
    payload = {
        "version": JSON_VERSION,
        "findings": [finding_json(f) for f in result.findings],
        "summary": summary(result),
        "families": [
            {"path": path, "family": name, **({"evidence": why} if why else {})} for path, name, why in families(result)
        ],
        **({"remote": result.remote} if result.remote else {}),
    }
    json.dump(payload, stream, indent=2, default=str)
    stream.write("\n")


def write_jsonl(result: CheckResult, stream: TextIO) -> None:
    """One JSON object per line: every finding ("type": "finding", with the target that found it), then one line
    per checked target ("type": "target": kind, family, counts), then one per Hub repository ("type": "remote").
    Lines of many runs concatenate into one file that a data tool reads as it is."""
    counts: dict[str, dict[str, int]] = {}
    for finding in result.findings:
        target = result.target_of.get(finding, finding.location.path)
        line = {"type": "finding", "target": target, **finding_json(finding)}
        stream.write(json.dumps(line, default=str) + "\n")
        per = counts.setdefault(target, {"error": 0, "warning": 0, "info": 0})
        per[finding.severity.value] += 1
    for checked in result.loaded:
        per = counts.get(checked.path, {"error": 0, "warning": 0, "info": 0})
        line = {
            "type": "target",
            "path": checked.path,
            "kind": checked.kind,
            "family": checked.family.name if checked.family is not None else None,
            "errors": per["error"],
            "warnings": per["warning"],
            "infos": per["info"],
        }
        stream.write(json.dumps(line, default=str) + "\n")
    for remote in result.remote:
        stream.write(json.dumps({"type": "remote", **remote}, default=str) + "\n")


def write_text(result: CheckResult, stream: TextIO, colour: bool | None = None) -> None:
    colour = use_colour(stream) if colour is None else colour

    def paint(text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if colour else text

    for finding in result.findings:
        code = paint(finding.rule_id, _BOLD + _COLOURS[finding.severity])
        where = paint(location_text(finding), _BOLD)
        label = "" if finding.severity is Severity.ERROR else f"[{finding.severity.value}] "
        stream.write(f"{where}: {code} {label}{finding.message}\n")
    for path, name, why in families(result):
        stream.write(paint(f"{path}: detected {name}" + (f" (from {why})" if why else "") + "\n", _DIM))
    for remote in result.remote:
        for line in remote_lines(remote):
            stream.write(paint(line + "\n", _DIM))
    s = summary(result)
    checked = ", ".join(
        _plural(n, w)
        for n, w in (
            (s["model_dirs"], "model directory"),
            (s["training_configs"], "training config"),
            (s["sources"], "Python file"),
        )
        if n
    )
    checked = checked.replace("directorys", "directories")
    if not result.findings:
        stream.write(paint(f"All checks passed ({checked or 'nothing to check'}).\n", _BOLD))
        return
    parts = [_plural(s["errors"], "error"), _plural(s["warnings"], "warning")]
    if s["infos"]:
        parts.append(f"{s['infos']} info")
    line = f"Found {', '.join(parts)} in {checked or 'the given paths'}."
    safe = s["fixable"] - s["fixable_unsafe"]
    if safe:
        line += f" {safe} fixable with `ttsdoctor fix`"
        line += f" ({s['fixable_unsafe']} more with `--unsafe-fixes`)." if s["fixable_unsafe"] else "."
    elif s["fixable_unsafe"]:
        line += f" {s['fixable_unsafe']} fixable with `ttsdoctor fix --unsafe-fixes`."
    stream.write(paint(line, _BOLD) + "\n")


def remote_lines(remote: dict[str, Any]) -> list[str]:
    """What a Hub check read: the commit, the bytes downloaded against the repository's size, what was left out."""
    from ttsdoctor.artifacts.errors import human_bytes

    total, read = remote["repository_bytes"], remote["bytes_downloaded"]
    percent = 100 * read / total if total else None
    share = "" if percent is None else f" ({percent:.3f}%)" if percent >= 0.001 else " (<0.001%)"
    cached = f", {remote['from_cache']} file(s) from the cache" if remote["from_cache"] else ""
    lines = [
        f"{remote['repository']}: commit {remote['commit']}, {remote['files']} files; read {human_bytes(read)} of "
        f"{human_bytes(total)}{share}{cached}"
    ]
    lines += [f"  not checked: {n['path']} ({human_bytes(n['bytes'])}): {n['why']}" for n in remote["not_checked"]]
    return lines


# --- CI formats ---------------------------------------------------------------------------------

_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _gh_escape(text: str, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def write_github(result: CheckResult, stream: TextIO) -> None:
    """GitHub Actions workflow commands: one annotation per finding."""
    for f in result.findings:
        loc = f.location
        props = [f"file={_gh_escape(loc.path, True)}"]
        line = loc.file_line if loc.cell is not None else loc.line  # notebooks: the line in the .ipynb file
        if line is not None:
            props += [f"line={line}"] + ([f"col={loc.column or 1}"] if loc.cell is None else [])
        props.append(f"title={_gh_escape(f'{f.rule_id} {f.rule_name}', True)}")
        stream.write(f"::{_GITHUB_LEVEL[f.severity]} {','.join(props)}::{_gh_escape(_cell_prefix(f) + f.message)}\n")


def _cell_prefix(finding: Finding) -> str:
    loc = finding.location
    return f"cell {loc.cell}, line {loc.line or 1}: " if loc.cell is not None else ""


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def sarif_payload(result: CheckResult) -> dict[str, Any]:
    from ttsdoctor import __version__
    from ttsdoctor.registry import ALL_RULES
    from ttsdoctor.ruledocs import read_doc, section

    rules = []
    index = {}
    for i, rule in enumerate(ALL_RULES):
        doc = read_doc(rule.id) or ""
        index[rule.id] = i
        rules.append(
            {
                "id": rule.id,
                "name": rule.name,
                "shortDescription": {"text": rule.summary},
                "fullDescription": {"text": section(doc, "What it does") or rule.summary},
                "help": {"text": section(doc, "Why is this bad?") or rule.summary, "markdown": doc or rule.summary},
                "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
                "properties": {"tags": [rule.id.rstrip("0123456789")]},
            }
        )
    results = []
    for f in result.findings:
        notebook = f.location.cell is not None
        region: dict[str, Any] = {"startLine": (f.location.file_line if notebook else f.location.line) or 1}
        if f.location.column and not notebook:
            region["startColumn"] = f.location.column
        entry: dict[str, Any] = {
            "ruleId": f.rule_id,
            "ruleIndex": index.get(f.rule_id, 0),
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": _cell_prefix(f) + f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.location.path.replace(os.sep, "/")},
                        "region": region,
                    }
                }
            ],
            "partialFingerprints": {
                "ttsdoctor/v1": f"{f.rule_id}:{f.location.path}:{f.location.pointer or ''}:{f.message}"
            },
        }
        if f.location.pointer:
            entry["properties"] = {"pointer": f.location.pointer}
        if notebook:
            entry["properties"] = {**entry.get("properties", {}), "cell": f.location.cell, "cellLine": f.location.line}
        results.append(entry)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ttsdoctor",
                        "version": __version__,
                        "informationUri": "https://pypi.org/project/ttsdoctor/",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def write_sarif(result: CheckResult, stream: TextIO) -> None:
    json.dump(sarif_payload(result), stream, indent=2, default=str)
    stream.write("\n")
