"""Fixture cases: fixtures/<ID>/{good,bad}/<case>/ with the expected findings of rule <ID> beside them.

    <case>.expected.json   the findings of rule <ID> for the case (paths relative to the case dir)
    <case>.fixed/          for fixable bad cases: the files as `ttsdoctor fix --apply` must leave them

Run `python tests/fixture_cases.py --write` after changing a rule to rewrite the expectations, then
read the diff: every changed line is a changed message a user will see.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
sys.path.insert(0, ROOT)


@dataclass(frozen=True)
class Case:
    rule_id: str
    kind: str  # "good" | "bad"
    name: str

    @property
    def path(self) -> str:
        return os.path.join(FIXTURES, self.rule_id, self.kind, self.name)

    @property
    def expected_path(self) -> str:
        return self.path + ".expected.json"

    @property
    def fixed_path(self) -> str:
        return self.path + ".fixed"

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.kind}/{self.name}"


def all_cases() -> list[Case]:
    out = []
    for rule_id in sorted(os.listdir(FIXTURES)):
        if not os.path.isdir(os.path.join(FIXTURES, rule_id)) or rule_id.startswith(("_", ".")):
            continue
        for kind in ("good", "bad"):
            base = os.path.join(FIXTURES, rule_id, kind)
            if not os.path.isdir(base):
                continue
            for name in sorted(os.listdir(base)):
                if os.path.isdir(os.path.join(base, name)) and not name.endswith(".fixed"):
                    out.append(Case(rule_id, kind, name))
    return out


@contextlib.contextmanager
def case_env(case: Case):
    """Environment facts a case is checked under (<case>.env.json), e.g. the GPU it targets."""
    from ttsdoctor.checks.environment import gpu_compute_capabilities

    env_path = case.path + ".env.json"
    values = {}
    if os.path.exists(env_path):
        with open(env_path, encoding="utf-8") as fh:
            values = json.load(fh)
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    gpu_compute_capabilities.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        gpu_compute_capabilities.cache_clear()


def actual_findings(case: Case) -> list[dict]:
    with case_env(case):
        return _actual_findings(case)


def _actual_findings(case: Case) -> list[dict]:
    from ttsdoctor import engine
    from ttsdoctor.discover import discover
    from ttsdoctor.registry import ALL_RULES

    result = engine.run(ALL_RULES, discover([case.path]))
    assert not result.internal_errors, result.internal_errors
    out = []
    for f in result.findings:
        if f.rule_id != case.rule_id:
            continue
        out.append(
            {
                "code": f.rule_id,
                "severity": f.severity.value,
                "path": os.path.relpath(f.location.path, case.path),
                "pointer": f.location.pointer,
                "line": f.location.line,
                "column": f.location.column,
                "message": f.message.replace(case.path + os.sep, ""),
                "evidence": _portable(f.evidence, case.path),
                "fix": None if f.fix is None else f.fix.applicability.value,
                **({"cell": f.location.cell} if f.location.cell is not None else {}),
            }
        )
    return out


def _portable(value: object, root: str) -> object:
    """Evidence as JSON, with the case's own folder removed from paths (the snapshot holds on any checkout)."""
    if isinstance(value, dict):
        return {str(k): _portable(v, root) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_portable(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root + os.sep, "").replace(root, ".")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return repr(value)


def fixable(case: Case) -> bool:
    """A bad case whose findings of its rule all carry a fix: it gets a <case>.fixed directory."""
    findings = actual_findings(case)
    return case.kind == "bad" and bool(findings) and all(f["fix"] not in (None, "display-only") for f in findings)


def apply_fixes(case: Case, workdir: str) -> tuple[int, str]:
    """Copy the case into workdir and run `ttsdoctor fix --apply --unsafe-fixes --select <ID>` on it."""
    import io
    import shutil

    from ttsdoctor.cli import main

    copy = os.path.join(workdir, case.name)
    shutil.copytree(case.path, copy)
    out = io.StringIO()
    code = main(["fix", copy, "--apply", "--unsafe-fixes", "--select", case.rule_id], out=out)
    return code, copy


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")  # checked by re-check, not stored twice


def changed_files(original: str, fixed: str) -> dict[str, bytes]:
    out = {}
    for directory, dirnames, filenames in os.walk(fixed):
        dirnames[:] = [d for d in dirnames if d != ".ttsdoctor-backups"]
        for name in filenames:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, fixed)
            with open(path, "rb") as fh:
                data = fh.read()
            before = os.path.join(original, rel)
            if not os.path.exists(before) or open(before, "rb").read() != data:
                out[rel] = data
    return out


def write_fixed() -> None:
    import shutil
    import tempfile

    for case in all_cases():
        if os.path.isdir(case.fixed_path):
            shutil.rmtree(case.fixed_path)
        if not fixable(case):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            _code, copy = apply_fixes(case, tmp)
            for rel, data in changed_files(case.path, copy).items():
                if rel.endswith(WEIGHT_SUFFIXES):
                    continue  # weights are checked by re-check, not stored twice
                target = os.path.join(case.fixed_path, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as fh:
                    fh.write(data)


def write_expected() -> None:
    for case in all_cases():
        findings = actual_findings(case)
        if not findings and case.kind == "good":
            if os.path.exists(case.expected_path):
                os.remove(case.expected_path)
            continue
        with open(case.expected_path, "w", encoding="utf-8") as fh:
            json.dump(findings, fh, indent=2, ensure_ascii=False)
            fh.write("\n")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_expected()
        write_fixed()
    for case in all_cases():
        print(case, len(actual_findings(case)))
