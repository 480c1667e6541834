"""Command line: `ttsdoctor check | rule | ...`. Exit 0 clean, 1 findings, 2 usage error or unreadable input.

This module must stay light: no torch, no transformers, no textual at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ttsdoctor import __version__

if TYPE_CHECKING:
    from ttsdoctor.discover import Target
    from ttsdoctor.engine import CheckResult
    from ttsdoctor.finding import Finding
    from ttsdoctor.rule import Rule
    from ttsdoctor.settings import Settings
    from ttsdoctor.smoke import SmokeReport

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"ttsdoctor: error: {message}\n")
        raise SystemExit(EXIT_ERROR)


def _jobs(value: str) -> int:
    try:
        jobs = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs takes a whole number, not {value!r}") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError("--jobs takes a number of 1 or more")
    return jobs


def _job_count(args: argparse.Namespace) -> int:
    from ttsdoctor.engine import usable_cores

    return args.jobs if getattr(args, "jobs", None) else usable_cores()


def _codes(value: str) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ttsdoctor",
        description="Lint and fix text-to-speech model directories, training configs and the code that loads them.",
    )
    parser.add_argument("--version", action="version", version=f"ttsdoctor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = sub.add_parser("check", help="lint model directories, training configs and Python sources")
    check.add_argument("paths", nargs="*", default=["."], help="model directories, files or repository trees")
    check.add_argument("--select", type=_codes, action="extend", help="rule ids or family prefixes (TOK,VOC001)")
    check.add_argument("--ignore", type=_codes, action="extend", help="rule ids or family prefixes to skip")
    check.add_argument("--format", choices=("text", "json", "jsonl", "github", "sarif"), default="text")
    check.add_argument("--output", "-o", help="write the report to this file instead of standard output")
    check.add_argument(
        "--config",
        help="settings file (default: the nearest ttsdoctor.toml or pyproject.toml "
        "with [tool.ttsdoctor], from the first path upwards)",
    )
    check.add_argument("--baseline", help="report only findings that are not in this baseline file")
    check.add_argument("--write-baseline", metavar="FILE", help="record today's findings in FILE and exit 0")
    check.add_argument("--hook", action="store_true", help=argparse.SUPPRESS)
    check.add_argument("--jobs", "-j", type=_jobs, default=None, help="worker processes (default: usable cores)")
    check.add_argument(
        "--hub",
        action="store_true",
        help="read ORG/NAME paths that do not exist locally as Hub repositories (as hf://ORG/NAME)",
    )
    check.add_argument(
        "--remote",
        action="store_true",
        help="training configs that name Hub ids (tokenizer_name: ORG/NAME): read those repositories' small files "
        "and weight headers for the cross-file rules (off by default: no network unless asked)",
    )
    check.add_argument(
        "--download-pickles",
        action="store_true",
        help="Hub repositories: download pickle checkpoints (.bin/.pt/.pth/.ckpt) whole to scan them (their size "
        "is said first); without it they are listed as not checked",
    )

    fix = sub.add_parser("fix", help="show (default) or apply the fixes of the findings")
    fix.add_argument("paths", nargs="*", default=["."], help="model directories, files or repository trees")
    mode = fix.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="print the planned changes and exit 1 if any (default)")
    mode.add_argument("--apply", action="store_true", help="write the changes (backups first, re-check after)")
    mode.add_argument(
        "--resume",
        action="store_true",
        help="finish a fix that was interrupted: put its files back, then apply again (as --apply does)",
    )
    mode.add_argument(
        "--rollback",
        action="store_true",
        help="undo an interrupted fix, or else the last fix applied, from its backups",
    )
    fix.add_argument("--unsafe-fixes", action="store_true", help="also apply fixes that change weights or outputs")
    fix.add_argument(
        "--no-backups",
        action="store_true",
        help="delete the backups once the fixes are verified (under git, git is the backup)",
    )
    fix.add_argument(
        "--prove",
        action="store_true",
        help="with --apply: run the smoke proof before and after; roll back when the proof after the fix fails",
    )
    fix.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device for --prove")
    fix.add_argument("--select", type=_codes, action="extend", help="rule ids or family prefixes")
    fix.add_argument("--ignore", type=_codes, action="extend", help="rule ids or family prefixes to skip")
    fix.add_argument("--config", help="settings file (default: found from the first path upwards)")
    fix.add_argument("--hook", action="store_true", help=argparse.SUPPRESS)
    fix.add_argument("--jobs", "-j", type=_jobs, default=None, help="worker processes (default: usable cores)")

    smoke = sub.add_parser("smoke", help="load the model with transformers and prove it generates correctly")
    smoke.add_argument("path", help="a model directory")
    smoke.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    smoke.add_argument("--format", choices=("text", "json"), default="text")
    smoke.add_argument("--output", "-o", help="also write the JSON report to this file")
    smoke.add_argument("--max-new-tokens", type=int, default=8, help="new tokens per probe generation (default 8)")
    smoke.add_argument(
        "--max-speech-tokens",
        type=int,
        default=256,
        help="cap on the speech check's generation, which otherwise runs the budget the model's generation "
        "config allows (default 256)",
    )
    smoke.add_argument(
        "--with-mask",
        action="store_true",
        help="pass attention_mask in the batch check (default: let transformers infer it, as code "
        "that passes none does)",
    )
    smoke.add_argument("--trust-remote-code", action="store_true", help="allow custom code from the model dir")

    tui = sub.add_parser("tui", help="the interactive interface")
    tui.add_argument("paths", nargs="*", default=["."], help="model directories, files or repository trees")
    tui.add_argument("--select", type=_codes, action="extend", help="rule ids or family prefixes")
    tui.add_argument("--ignore", type=_codes, action="extend", help="rule ids or family prefixes to skip")
    tui.add_argument("--config", help="settings file (default: found from the first path upwards)")
    tui.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device for the smoke proof")
    tui.set_defaults(hook=False)

    doctor = sub.add_parser("doctor", help="report the environment: Python, torch, CUDA, transformers, attention")
    doctor.add_argument("--format", choices=("text", "json"), default="text")

    rule = sub.add_parser("rule", help="show a rule's documentation")
    rule.add_argument("id", nargs="?", help="rule id, for example TOK001")
    rule.add_argument("--all", action="store_true", help="list every rule")
    return parser


def _write_report(result: CheckResult, fmt: str, stream: TextIO, colour: bool | None = None) -> None:
    from ttsdoctor import report

    if fmt == "json":
        report.write_json(result, stream)
    elif fmt == "jsonl":
        report.write_jsonl(result, stream)
    elif fmt == "github":
        report.write_github(result, stream)
    elif fmt == "sarif":
        report.write_sarif(result, stream)
    else:
        report.write_text(result, stream, colour)


class _Usage(Exception):
    """A usage or settings problem: exit 2 with the message."""


def _hub_refs(args: argparse.Namespace, allowed: bool) -> list[str]:
    """Split the Hub repositories (hf://ORG/NAME) off the paths into `args.hub_refs`; the local paths are returned.
    Commands that write or load a model refuse them."""
    bare = getattr(args, "hub", False)
    if not bare and not any(path.startswith("hf://") for path in args.paths):
        args.hub_refs = []
        return list(args.paths)  # no Hub path: huggingface_hub and the Hub module are not imported
    from ttsdoctor import hub

    refs: list[hub.HubRef] = []
    local: list[str] = []
    for path in args.paths:
        try:
            ref = hub.parse_ref(path, bare=bare)
        except hub.HubError as exc:
            raise _Usage(str(exc)) from None
        if ref is None:
            local.append(path)
        else:
            refs.append(ref)
    if refs and not allowed:
        raise _Usage(
            f"{refs[0].text}: `ttsdoctor {args.command}` works on local folders; `ttsdoctor check` reads Hub "
            "repositories (download one first to fix it: `hf download ORG/NAME --local-dir DIR`)"
        )
    args.hub_refs = refs
    return local


def _prepare(args: argparse.Namespace, hub_allowed: bool = False) -> tuple[tuple[Rule, ...], list[Target], Settings]:
    """(rules, targets, settings) from the command line and the settings file."""
    from ttsdoctor.discover import discover
    from ttsdoctor.registry import select_rules
    from ttsdoctor.settings import SettingsError, find_settings, load_settings

    local = _hub_refs(args, hub_allowed)
    try:
        settings_path = args.config or find_settings(local[0] if local else ".")
        if args.config and not os.path.isfile(args.config):
            raise _Usage(f"{args.config}: settings file not found")
        settings = load_settings(settings_path)
        select = args.select or settings.select
        ignore = (args.ignore or []) + settings.ignore
        rules = select_rules(select, ignore)
        from ttsdoctor.registry import RULES_BY_ID

        unknown = sorted(set(settings.rule_options) - set(RULES_BY_ID))
        if unknown:
            raise ValueError(f"{settings.path}: options for unknown rule {unknown[0]!r}")
        rules = tuple(rule.configured(settings.rule_options.get(rule.id, {})) for rule in rules)
    except (SettingsError, ValueError) as exc:
        raise _Usage(str(exc)) from None
    return rules, discover(local, hook=args.hook) if local else [], settings


def _progress_bar(index: int, total: int, path: str) -> None:
    if sys.stderr.isatty() and total > 1:
        width = 24
        done = int(width * index / total)
        sys.stderr.write(f"\r\033[2K[{'#' * done}{'.' * (width - done)}] {index}/{total} {path[-60:]}")
        sys.stderr.flush()


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    try:
        rules, targets, settings = _prepare(args, hub_allowed=True)
    except _Usage as exc:
        sys.stderr.write(f"ttsdoctor: error: {exc}\n")
        return EXIT_ERROR
    if not args.hub_refs and not args.remote:
        return _check(args, rules, targets, settings, out)
    from ttsdoctor import hub

    with hub.workspace() as workdir:
        staged = []
        for ref in args.hub_refs:
            try:
                staged.append(hub.stage(ref, workdir, args.download_pickles, say=_say))
            except hub.HubError as exc:
                sys.stderr.write(f"ttsdoctor: error: {exc}\n")
                return EXIT_ERROR
            except OSError as exc:
                sys.stderr.write(f"ttsdoctor: error: {ref.text}: cannot stage it in {workdir}: {exc}\n")
                return EXIT_ERROR
        targets += hub.targets(staged)
        if args.remote:  # what training configs name: a repository that cannot be read leaves its rules unrun
            named = [s for s in staged if s.ref.revision is None]
            for repo_id in hub.named_ids(targets):
                if any(s.ref.repo_id == repo_id for s in named):
                    continue
                try:
                    named.append(hub.stage(hub.HubRef(repo_id, None), workdir, say=_say))
                except (hub.HubError, OSError) as exc:
                    _say(f"warning: {exc}: the rules that would read it did not run")
            targets = hub.with_hub_folders(targets, named)
            staged += [s for s in named if s not in staged]
        return _check(args, rules, targets, settings, out, staged)


def _say(message: str) -> None:
    sys.stderr.write(f"ttsdoctor: {message}\n")


def _check(
    args: argparse.Namespace,
    rules: tuple[Rule, ...],
    targets: list[Target],
    settings: Settings,
    out: TextIO,
    staged: list[Any] | None = None,
) -> int:
    from ttsdoctor import engine
    from ttsdoctor.baseline import BaselineError, filter_new, write_baseline

    if not targets and not args.hook:
        sys.stderr.write(
            "ttsdoctor: warning: no model directories, training configs or Python files found in "
            + " ".join(args.paths)
            + "\n"
        )
    _warn_interrupted(targets)
    result = engine.run(rules, targets, settings, progress=_progress_bar, jobs=_job_count(args))
    _progress_done()
    if staged:
        from ttsdoctor import hub

        hub.relabel_result(result, staged)
    if args.write_baseline:
        count = write_baseline(result.findings, args.write_baseline)
        out.write(f"Recorded {count} finding{'s' if count != 1 else ''} in {args.write_baseline}.\n")
        return EXIT_CLEAN
    baseline = args.baseline or settings.baseline
    if baseline:
        try:
            result.findings, matched = filter_new(result.findings, baseline)
        except BaselineError as exc:
            sys.stderr.write(f"ttsdoctor: error: {exc}\n")
            return EXIT_ERROR
        if matched and args.format == "text":
            sys.stderr.write(
                f"ttsdoctor: {matched} finding{'s' if matched != 1 else ''} in the baseline {baseline} not shown\n"
            )
    if args.output:
        buffer = io.StringIO()
        _write_report(result, args.format, buffer, colour=False)
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(buffer.getvalue())
        except OSError as exc:
            sys.stderr.write(f"ttsdoctor: error: cannot write {args.output}: {exc.strerror}\n")
            return EXIT_ERROR
    else:
        # `ttsdoctor check . | head`: the reader may leave early; the exit code still tells CI the verdict
        with contextlib.suppress(BrokenPipeError):
            _write_report(result, args.format, out)
    for problem in result.internal_errors:
        sys.stderr.write(f"ttsdoctor: internal error (please report): {problem}\n")
    if result.unreadable or result.internal_errors:
        return EXIT_ERROR
    blocking = [f for f in result.findings if f.severity.value in ("error", "warning")]
    return EXIT_FINDINGS if blocking else EXIT_CLEAN


def _cmd_rule(args: argparse.Namespace, out: TextIO) -> int:
    from ttsdoctor.registry import ALL_RULES, RULES_BY_ID
    from ttsdoctor.ruledocs import read_doc

    if args.all or not args.id:
        width = max(len(r.name) for r in ALL_RULES)
        for rule in ALL_RULES:
            out.write(f"{rule.id}  {rule.name:<{width}}  {rule.severity.value:<7}  {rule.summary}\n")
        return EXIT_CLEAN
    rule_id = args.id.upper()
    found = RULES_BY_ID.get(rule_id) or next((r for r in ALL_RULES if r.name == args.id), None)
    if found is None:
        sys.stderr.write(f"ttsdoctor: error: unknown rule {args.id!r} (see `ttsdoctor rule --all`)\n")
        return EXIT_ERROR
    doc = read_doc(found.id)
    out.write(f"# {found.id} {found.name} ({found.severity.value})\n\n")
    out.write(doc.split("\n", 1)[1].lstrip("\n") if doc and doc.startswith("# ") else (doc or found.summary + "\n"))
    return EXIT_CLEAN


def _cmd_fix(args: argparse.Namespace, out: TextIO) -> int:
    from ttsdoctor import engine, fixer, report

    try:
        rules, targets, settings = _prepare(args)
    except _Usage as exc:
        sys.stderr.write(f"ttsdoctor: error: {exc}\n")
        return EXIT_ERROR
    args.unsafe_fixes = args.unsafe_fixes or settings.unsafe_fixes
    args.apply = args.apply or args.resume
    if args.rollback:
        return _rollback(targets, out)
    if args.prove and not args.apply:
        sys.stderr.write("ttsdoctor: error: --prove runs with --apply (it proves the fix it applies)\n")
        return EXIT_ERROR
    if not args.apply:
        _warn_interrupted(targets)
        result = engine.run(rules, targets, settings, jobs=_job_count(args))
        if result.unreadable:
            report.write_text(engine.CheckResult(result.unreadable_findings, result.loaded), out)
            return EXIT_ERROR
        planned = fixer.plan(result.findings, args.unsafe_fixes)
        out.write(fixer.diff(planned))
        for finding, reason in planned.skipped:
            if reason.startswith(("unsafe", "not applied")):
                out.write(
                    f"{report.location_text(finding)}: {finding.rule_id} fix not planned ({reason}): "
                    f"{finding.fix.title if finding.fix else ''}\n"
                )
        _write_by_hand(result.findings, out)
        count = len(planned.fixes)
        if planned.empty:
            out.write("No fixes to apply.\n")
            return EXIT_CLEAN
        out.write(
            f"{count} fix{'es' if count != 1 else ''} would change {len(planned.paths)} "
            f"file{'s' if len(planned.paths) != 1 else ''}; run with --apply to write them.\n"
        )
        return EXIT_FINDINGS
    if args.prove:
        return _fix_with_proof(args, rules, targets, settings, out)
    outcome = fixer.fix_and_verify(
        rules, targets, args.unsafe_fixes, check=lambda: engine.run(rules, targets, settings, jobs=_job_count(args))
    )
    for found, restored in outcome.recovered:
        out.write(f"rolled back an interrupted fix ({found.journal}): restored {len(restored)} file(s)\n")
    for fix, findings in outcome.applied:
        where = ", ".join(sorted({report.location_text(f) for f in findings}))
        out.write(f"fixed {findings[0].rule_id} ({fix.title}) at {where}\n")
    backups = {p: b for p, b in outcome.backups.items() if b}
    if args.no_backups and not outcome.failure:
        for tx in outcome.transactions:
            tx.discard()
        backups = {}
    if backups:
        out.write("backups:\n" + "".join(f"  {p} -> {b}\n" for p, b in sorted(backups.items())))
    if outcome.failure:
        sys.stderr.write(f"ttsdoctor: error: {outcome.failure}\n")
        return EXIT_ERROR
    remaining = outcome.result.findings if outcome.result is not None else []
    blocking = [f for f in remaining if f.severity.value in ("error", "warning")]
    _write_by_hand(blocking, out)
    n = len(outcome.applied)
    out.write(
        f"Applied {n} fix{'es' if n != 1 else ''}; {len(blocking)} finding"
        f"{'s' if len(blocking) != 1 else ''} remain{'s' if len(blocking) == 1 else ''}"
        + (" (`ttsdoctor check` lists them)." if blocking else ".")
        + "\n"
    )
    return EXIT_FINDINGS if blocking else EXIT_CLEAN


def _warn_interrupted(targets: list[Target]) -> None:
    from ttsdoctor import fixer

    for found in fixer.interrupted(fixer.target_folders(targets)):
        sys.stderr.write(
            f"ttsdoctor: warning: an interrupted fix left {found.names} possibly half-written ({found.journal}): "
            "run `ttsdoctor fix --rollback` to put them back, or `ttsdoctor fix --resume` to finish it\n"
        )


def _rollback(targets: list[Target], out: TextIO) -> int:
    from ttsdoctor import fixer

    try:
        done = fixer.rollback_last(targets)
    except fixer.FolderBusy as exc:
        sys.stderr.write(f"ttsdoctor: error: {exc}\n")
        return EXIT_ERROR
    except OSError as exc:
        sys.stderr.write(f"ttsdoctor: error: nothing rolled back: {exc}\n")
        return EXIT_ERROR
    if not done:
        out.write("Nothing to roll back: no fix journal in these folders.\n")
        return EXIT_CLEAN
    for found, restored in done:
        what = "an interrupted fix" if found.state == "writing" else "the last fix"
        out.write(f"rolled back {what} ({found.journal}): restored {', '.join(restored) or 'no file (none changed)'}\n")
    return EXIT_CLEAN


def _write_by_hand(findings: list[Finding], out: TextIO) -> None:
    """Findings whose fix ttsdoctor cannot apply, with what to do (a display-only fix says why)."""
    from ttsdoctor import report
    from ttsdoctor.finding import Applicability

    seen = set()
    for finding in findings:
        fix = finding.fix
        if fix is None or fix.applicability is not Applicability.DISPLAY_ONLY or fix.title in seen:
            continue
        seen.add(fix.title)
        out.write(f"{report.location_text(finding)}: {finding.rule_id} not fixed automatically: {fix.title}\n")


def _fix_with_proof(
    args: argparse.Namespace, rules: tuple[Rule, ...], targets: list[Target], settings: Settings, out: TextIO
) -> int:
    """fix --apply --prove: smoke before, fix, smoke after; roll the fix back when the proof after fails."""
    from ttsdoctor import engine, fixer, smoke

    models = [t.path for t in targets if t.kind == "model_dir"]
    if not models:
        sys.stderr.write("ttsdoctor: error: --prove needs a model directory among the paths\n")
        return EXIT_ERROR
    try:
        smoke.ensure_available()
    except smoke.SmokeUnavailable as exc:
        sys.stderr.write(f"ttsdoctor: error: {exc}\n")
        return EXIT_ERROR
    before = {path: _run_smoke(path, args.device) for path in models}
    outcome = fixer.fix_and_verify(
        rules, targets, args.unsafe_fixes, check=lambda: engine.run(rules, targets, settings, jobs=_job_count(args))
    )
    if outcome.failure:
        sys.stderr.write(f"ttsdoctor: error: {outcome.failure}\n")
        return EXIT_ERROR
    after = {path: _run_smoke(path, args.device) for path in models}
    for path in models:
        out.write(smoke.format_report(before[path], after[path]))
    verdicts = []
    for fix, findings in outcome.applied:
        rule_id = findings[0].rule_id
        model = _model_of(findings[0].location.path, models)
        kind, checks = smoke.verdict(rule_id, before[model], after[model]) if model else (smoke.NOT_PROVABLE, [])
        verdicts.append((fix, rule_id, kind, checks))
    # Rolled back when the fix broke a check that passed before it, or when a check that shows a fixed finding
    # still fails after it; checks failing before and after for reasons no fix touched do not undo the fixes.
    reasons = [
        f"{path}: {', '.join(names)} passed before the fix and fail after it"
        for path in models
        if (names := smoke.regressions(before[path], after[path]))
    ]
    reasons += [
        f"{rule_id}: {', '.join(checks)} still fail"
        for _, rule_id, kind, checks in verdicts
        if kind == smoke.STILL_FAILING
    ]
    if reasons and outcome.applied:
        restored = outcome.rollback()
        out.write(f"the proof after the fix failed ({'; '.join(reasons)}): rolled back {len(restored)} file(s)\n")
        return EXIT_ERROR
    counts: dict[str, int] = {}
    for fix, rule_id, kind, checks in verdicts:
        counts[kind] = counts.get(kind, 0) + 1
        behind = f" ({', '.join(checks)}: FAIL before, pass after)" if kind == smoke.PROVEN else ""
        behind = f" ({', '.join(checks)} passed before the fix too)" if kind == smoke.NOT_DEMONSTRATED else behind
        out.write(f"fixed {rule_id} ({fix.title}): {kind}{behind}\n")
    if outcome.applied:
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: kv[0] != smoke.PROVEN))
        out.write(f"Applied {len(outcome.applied)} fix(es): {summary}.\n")
    else:
        out.write("No fixes to apply.\n")
    return EXIT_CLEAN if all(after[path].passed for path in models) else EXIT_FINDINGS


def _model_of(path: str, models: list[str]) -> str | None:
    """The model folder (of those proven) that a finding's file belongs to."""
    found = [m for m in models if os.path.abspath(path).startswith(os.path.abspath(m).rstrip(os.sep) + os.sep)]
    return max(found, key=len) if found else (models[0] if len(models) == 1 else None)


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[2K  {message}...")
        sys.stderr.flush()


def _progress_done() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[2K")


def _run_smoke(path: str, device: str, **kwargs: Any) -> SmokeReport:
    from ttsdoctor import smoke

    try:
        return smoke.run_smoke(path, device=device, progress=_progress, **kwargs)
    finally:
        _progress_done()


def _cmd_smoke(args: argparse.Namespace, out: TextIO) -> int:
    import json

    from ttsdoctor import smoke

    if args.path.startswith("hf://"):
        sys.stderr.write(
            f"ttsdoctor: error: {args.path}: the smoke proof loads the weights; download the repository first "
            "(`hf download ORG/NAME --local-dir DIR`), or `ttsdoctor check` it without downloading\n"
        )
        return EXIT_ERROR
    if not os.path.isdir(args.path):
        sys.stderr.write(f"ttsdoctor: error: {args.path}: not a model directory\n")
        return EXIT_ERROR
    from ttsdoctor.artifacts.model_dir import is_model_dir
    from ttsdoctor.discover import discover

    if not is_model_dir(os.listdir(args.path)):  # a project folder: the model folder inside it, if there is one
        models = [t.path for t in discover([args.path]) if t.kind == "model_dir"]
        if len(models) != 1:
            listed = "".join(f"\n  ttsdoctor smoke {m}" for m in models[:20])
            why = f"it holds {len(models)} model directories; choose one:{listed}" if models else "nor holds one"
            sys.stderr.write(f"ttsdoctor: error: {args.path} is not a model directory, {why}\n")
            return EXIT_ERROR
        sys.stderr.write(f"ttsdoctor: {args.path} is not a model directory: proving {models[0]}, found inside it\n")
        args.path = models[0]
    try:
        report = _run_smoke(
            args.path,
            args.device,
            trust_remote_code=args.trust_remote_code,
            max_new_tokens=args.max_new_tokens,
            explicit_mask=args.with_mask,
            max_speech_tokens=args.max_speech_tokens,
        )
    except smoke.SmokeUnavailable as exc:
        sys.stderr.write(f"ttsdoctor: error: {exc}\n")
        return EXIT_ERROR
    payload = json.dumps(report.to_json(), indent=2, default=str) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(payload)
        except OSError as exc:
            sys.stderr.write(f"ttsdoctor: error: cannot write {args.output}: {exc.strerror}\n")
            return EXIT_ERROR
    if args.format == "json":
        out.write(payload)
    else:
        out.write(smoke.format_report(report))
        for line in _demonstrations(args.path, report):
            out.write(line + "\n")
    return EXIT_CLEAN if report.passed else EXIT_FINDINGS


def _demonstrations(path: str, report: SmokeReport) -> list[str]:
    """Which findings of `check` the smoke run demonstrated (a check they predict failed)."""
    from ttsdoctor import engine, smoke
    from ttsdoctor import report as reports
    from ttsdoctor.discover import discover
    from ttsdoctor.registry import ALL_RULES

    lines = []
    for finding in engine.run(ALL_RULES, discover([path])).findings:
        shown = smoke.demonstrated(finding.rule_id, report)
        if shown:
            names = ", ".join(c.name for c in shown)
            lines.append(f"demonstrates {finding.rule_id} at {reports.location_text(finding)} ({names} failed)")
    return list(dict.fromkeys(lines))


def _cmd_tui(args: argparse.Namespace, out: TextIO) -> int:
    try:
        rules, _targets, settings = _prepare(args)
    except _Usage as exc:
        sys.stderr.write(f"ttsdoctor: error: {exc}\n")
        return EXIT_ERROR
    from ttsdoctor.tui.app import run_tui

    run_tui(args.paths, rules, settings, settings.unsafe_fixes, args.device)
    return EXIT_CLEAN


def _cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    import json

    from ttsdoctor import doctor

    items = doctor.diagnose()
    if args.format == "json":
        out.write(json.dumps(doctor.as_json(items), indent=2) + "\n")
    else:
        out.write(doctor.format_items(items))
    return EXIT_FINDINGS if any(i.status == doctor.FAIL for i in items) else EXIT_CLEAN


COMMANDS = {
    "check": _cmd_check,
    "fix": _cmd_fix,
    "smoke": _cmd_smoke,
    "tui": _cmd_tui,
    "doctor": _cmd_doctor,
    "rule": _cmd_rule,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
    try:
        return COMMANDS[args.command](args, out or sys.stdout)
    except KeyboardInterrupt:
        sys.stderr.write("ttsdoctor: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN


HARD_EXIT_COMMANDS = ("check", "rule")


def main_exit() -> None:
    """Console-script and `python -m ttsdoctor` entry point.

    `check` and `rule` leave with os._exit once their output is flushed, as mypy does: they hold nothing
    to clean up, and the interpreter's teardown (freeing a 150k-token tokenizer, then every module) costs
    about 50 ms (a fifth of a 150k-token check).
    """
    import gc

    # Parsing builds millions of short-lived AST nodes, which trigger a collection every 700 allocations; with
    # collections 140x rarer the torch tree checks in 21.6 s instead of 25.8 s on one core, same peak memory
    # (131 MB), as mypy raises its threshold for the same reason. The CLI process (and its forked workers) only.
    gc.set_threshold(100_000, 50, 100)
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] and argv[0] in HARD_EXIT_COMMANDS:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader went away (`ttsdoctor check . | head`): nothing left to say
        os._exit(code)
    raise SystemExit(code)
