"""Baselines: record today's findings, then report only new ones.

A finding is identified by rule, path, JSON pointer and message, not by line, so editing a file
above a known finding does not make it new again. Counts are kept: a second identical finding is new.
"""

from __future__ import annotations

import json
import os
from collections import Counter

from ttsdoctor.finding import Finding

VERSION = 1


class BaselineError(Exception):
    pass


def _key(finding: Finding, root: str) -> tuple[str, str, str, str]:
    path = os.path.relpath(os.path.abspath(finding.location.path), root).replace(os.sep, "/")
    return finding.rule_id, path, finding.location.pointer or "", finding.message


def write_baseline(findings: list[Finding], path: str) -> int:
    root = os.path.dirname(os.path.abspath(path))
    entries = [dict(zip(("code", "path", "pointer", "message"), _key(f, root))) for f in findings]
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
    known = Counter(
        (e.get("code"), e.get("path"), e.get("pointer") or "", e.get("message"))
        for e in payload["findings"]
        if isinstance(e, dict)
    )
    new, matched = [], 0
    for finding in findings:
        key = _key(finding, root)
        if known[key] > 0:
            known[key] -= 1
            matched += 1
        else:
            new.append(finding)
    return new, matched
