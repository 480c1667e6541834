"""Contributor commands: scaffold a rule, regenerate the README's rule table.

    python -m ttsdoctor.dev new-rule TOK008 pad-after-eos --module tokens --target model_dir \
        --severity warning --summary "The pad id is declared after the eos id"
    python -m ttsdoctor.dev readme

`new-rule` writes the rule's class (appended to ttsdoctor/checks/<module>.py, which it creates with its imports
for a new family), registers it in
registry.py, creates rules/<ID>.md with every section the docs test asks for, and good and bad
fixture folders with a placeholder config; then `readme` puts the rule in README.md's table. Each
file it writes is new or only appended to; nothing existing is rewritten. The scaffolded rule
finds nothing until its `check` is written, and the fixture tests fail until the bad fixture shows
the problem: the skeleton is a starting point that the test suite refuses to accept as is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_TYPES = {  # --target: the loaded type the rule receives, its module, the method that receives it
    "model_dir": ("ModelDir", "ttsdoctor.artifacts.model_dir", "check_model"),
    "training_config": ("TrainingConfig", "ttsdoctor.artifacts.training_config", "check_training_config"),
    "source": ("SourceFile", "ttsdoctor.artifacts.source", "check_source"),
}
README_TABLE = re.compile(r"\| Code \| Name \| Severity \| What it finds \|\n(?:\|.*\|\n)+")

DOC = """# {id} {name}

## What it does
{summary}.

## Why is this bad?
What breaks, when, with the error message a user sees (cite the public issue or code it comes from).

## Example
The smallest real-shaped config or code that shows it.

## Use instead
The corrected version.

## Fix safety
No automatic fix.
"""

MODULE = '''"""{family}: (describe the family of rules this module holds)."""

from __future__ import annotations

from collections.abc import Iterator

from {type_module} import {type_name}
from ttsdoctor.finding import Finding, Severity
from ttsdoctor.rule import Rule
'''

CLASS = """

class {cls}(Rule):
    id = "{id}"
    name = "{name}"
    summary = "{summary}"
    severity = Severity.{severity}

    def {method}(self, target: {type}) -> Iterator[Finding]:
        # Report with the actual values: yield self.finding(message, path, pointer, line, column, evidence)
        return iter(())
"""


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def new_rule(args: argparse.Namespace) -> int:
    from ttsdoctor.registry import RULES_BY_ID

    rule_id, name = args.id.upper(), args.name
    if not re.fullmatch(r"[A-Z]{3}\d{3}", rule_id) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
        sys.stderr.write("ttsdoctor.dev: the id is like TOK008 and the name kebab-case, like pad-after-eos\n")
        return 2
    if rule_id in RULES_BY_ID:
        sys.stderr.write(f"ttsdoctor.dev: {rule_id} exists already\n")
        return 2
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.module):
        sys.stderr.write("ttsdoctor.dev: --module is a module name of ttsdoctor/checks, like tokens or serving\n")
        return 2
    module = os.path.join(ROOT, "ttsdoctor", "checks", f"{args.module}.py")
    doc = os.path.join(ROOT, "rules", f"{rule_id}.md")
    fixtures = [os.path.join(ROOT, "fixtures", rule_id, kind, "example") for kind in ("good", "bad")]
    if os.path.exists(doc) or any(os.path.exists(f) for f in fixtures):
        sys.stderr.write(f"ttsdoctor.dev: {doc} and fixtures/{rule_id}/ must not exist yet\n")
        return 2
    type_name, type_module, method = TARGET_TYPES[args.target]
    if not os.path.isfile(module):  # a new family's module
        with open(module, "w", encoding="utf-8") as fh:
            fh.write(MODULE.format(family=rule_id[:3], type_module=type_module, type_name=type_name))
    cls = _class_name(name)
    with open(module, encoding="utf-8") as fh:
        source = fh.read()
    with open(module, "a", encoding="utf-8") as fh:
        fh.write(
            CLASS.format(
                cls=cls,
                id=rule_id,
                name=name,
                summary=args.summary.rstrip("."),
                severity=args.severity.upper(),
                method=method,
                type=type_name if f"import {type_name}" in source or f" {type_name}," in source else "Any",
            )
        )
    registry = os.path.join(ROOT, "ttsdoctor", "registry.py")
    with open(registry, encoding="utf-8") as fh:
        text = fh.read()
    text = text.replace("from ttsdoctor.rule import Rule\n", f"from ttsdoctor.checks.{args.module} import {cls}\n"
                        "from ttsdoctor.rule import Rule\n", 1)  # fmt: skip
    text = text.replace("    UnusedSuppression(),\n)", f"    {cls}(),\n    UnusedSuppression(),\n)", 1)
    with open(registry, "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(doc, "w", encoding="utf-8") as fh:
        fh.write(DOC.format(id=rule_id, name=name, summary=args.summary.rstrip(".")))
    for folder in fixtures:
        os.makedirs(folder)
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as fh:
            json.dump({"model_type": "qwen2", "vocab_size": 64}, fh, indent=2)
            fh.write("\n")
    import importlib

    importlib.reload(importlib.import_module(f"ttsdoctor.checks.{args.module}"))
    readme(importlib.reload(importlib.import_module("ttsdoctor.registry")).ALL_RULES)  # with the new rule
    print(f"created {cls} in {os.path.relpath(module, ROOT)} (registered), {os.path.relpath(doc, ROOT)},")
    print(f"fixtures/{rule_id}/good/example and fixtures/{rule_id}/bad/example; next:")
    print(f"  1. write {cls}.{method} ({type_module}.{type_name} is what it receives)")
    print(f"  2. make fixtures/{rule_id}/bad/example show the problem, good/example its correct form")
    print("  3. python tests/fixture_cases.py --write, read the .expected.json it writes, then pytest -m 'not slow'")
    return 0


def readme(rules: tuple[Any, ...] | None = None) -> int:
    """Rewrite README.md's rule table from the rule classes."""
    from ttsdoctor.ruledocs import rule_table

    if rules is None:
        from ttsdoctor.registry import ALL_RULES

        rules = ALL_RULES

    path = os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    table = rule_table(rules)
    new = README_TABLE.sub(lambda _m: table, text, count=1)
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ttsdoctor.dev", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new-rule", help="scaffold a rule: class, registry entry, doc, fixtures")
    new.add_argument("id", help="TOK008")
    new.add_argument("name", help="kebab-case: pad-after-eos")
    new.add_argument("--module", required=True, help="the checks module of its family: tokens, vocab, codec ...")
    new.add_argument("--target", choices=sorted(TARGET_TYPES), default="model_dir")
    new.add_argument("--severity", choices=("error", "warning", "info"), default="warning")
    new.add_argument("--summary", required=True, help="one line, no trailing period")
    sub.add_parser("readme", help="regenerate README.md's rule table from the rule classes")
    args = parser.parse_args(argv)
    return new_rule(args) if args.command == "new-rule" else readme()


if __name__ == "__main__":
    raise SystemExit(main())
