"""Baselines: record today's findings, then report only new ones.

A finding is identified by rule, path, JSON pointer and a fingerprint: a hash of the text of the line it points
at (not the line number, so an edit above it does not make it new again) and of its evidence, leaving out what
depends on the machine (installed versions, GPUs). The message is not part of it: a message that changes with
the installed transformers, or a reworded one, keeps matching. Counts are kept: a second identical finding is
new. Baselines written before fingerprints (with messages) are still read.
"""

from __future__ import annotations

import json
import os
from collections import Counter

from ttsdoctor.finding import Finding

VERSION = 1
MACHINE_KEYS = ("installed", "version", "gpu", "transformers", "torch", "cuda", "device")


class BaselineError(Exception):
    pass


def _rel(finding: Finding, root: str) -> str:
    return os.path.relpath(os.path.abspath(finding.location.path), root).replace(os.sep, "/")


def _key(finding: Finding, root: str) -> tuple[str, str, str, str]:
    return finding.rule_id, _rel(finding, root), finding.location.pointer or "", finding.message


def fingerprint(finding: Finding, lines: dict[str, list[str]] | None = None) -> str:
    """What identifies a finding across line shifts and package upgrades."""
    import hashlib

    loc = finding.location
    text = ""
    if loc.line is not None and loc.cell is None:
        cache = lines if lines is not None else {}
        if loc.path not in cache:
            try:
                with open(loc.path, encoding="utf-8", errors="replace") as fh:
                    cache[loc.path] = fh.read(8 << 20).splitlines()
            except OSError:
                cache[loc.path] = []
        file_lines = cache[loc.path]
        text = file_lines[loc.line - 1].strip() if 0 < loc.line <= len(file_lines) else ""
    elif loc.cell is not None:
        text = f"cell {loc.cell}"
    evidence = {k: v for k, v in finding.evidence.items() if not any(m in k.lower() for m in MACHINE_KEYS)}
    payload = json.dumps([finding.rule_id, loc.pointer or "", text, evidence], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]


def write_baseline(findings: list[Finding], path: str) -> int:
    root = os.path.dirname(os.path.abspath(path))
    lines: dict[str, list[str]] = {}
    entries = [
        {
            "code": f.rule_id,
            "path": _rel(f, root),
            "pointer": f.location.pointer or "",
            "line": f.location.line,
            "fingerprint": fingerprint(f, lines),
        }
        for f in findings
    ]
    payload = {"version": VERSION, "findings": entries}
    from ttsdoctor.fsio import atomic_write, write_bytes

    data = (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    atomic_write(path, lambda fh: write_bytes(data, fh))
    return len(entries)


def filter_new(findings: list[Finding], path: str) -> tuple[list[Finding], int]:
    """(findings not in the baseline, how many were matched)."""
    try:
        with open(path, encoding="utf-8") as fh:
            payload = json.load(fh)
    except FileNotFoundError:
        raise BaselineError(f"{path}: baseline file not found (create it with --write-baseline)") from None
    except (OSError, ValueError) as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc}") from None
    if (
        not isinstance(payload, dict)
        or payload.get("version") != VERSION
        or not isinstance(payload.get("findings"), list)
    ):
        raise BaselineError(f"{path}: not a ttsdoctor baseline (version {VERSION})")
    root = os.path.dirname(os.path.abspath(path))
    entries = [e for e in payload["findings"] if isinstance(e, dict)]
    by_print = Counter((e.get("code"), e.get("path"), e.get("fingerprint")) for e in entries if e.get("fingerprint"))
    by_message = Counter(  # baselines written before fingerprints
        (e.get("code"), e.get("path"), e.get("pointer") or "", e.get("message"))
        for e in entries
        if not e.get("fingerprint")
    )
    new, matched = [], 0
    lines: dict[str, list[str]] = {}
    for finding in findings:
        printed = (finding.rule_id, _rel(finding, root), fingerprint(finding, lines))
        old = _key(finding, root)
        if by_print[printed] > 0:
            by_print[printed] -= 1
            matched += 1
        elif by_message[old] > 0:
            by_message[old] -= 1
            matched += 1
        else:
            new.append(finding)
    return new, matched
