"""The interactive TUI: findings by model directory / file and severity, details, diff preview, fixes, smoke proof.

The check and the smoke proof run in worker threads: the screen appears at once and never freezes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections import Counter
from typing import Any, ClassVar

from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Header, Input, Label, Markdown, ProgressBar, RichLog, Static, Tree
from textual.worker import get_current_worker

from ttsdoctor import engine, fixer
from ttsdoctor.discover import Target, discover
from ttsdoctor.finding import Applicability, Finding, Severity
from ttsdoctor.registry import ALL_RULES
from ttsdoctor.ruledocs import read_doc
from ttsdoctor.settings import Settings

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
SEVERITY_CYCLE = (None, Severity.ERROR, Severity.WARNING, Severity.INFO)

HELP = """\
# ttsdoctor keys

| key | action |
| --- | --- |
| up / down, enter | move through findings, open a group |
| `a` | apply the selected finding's fix (asks first; unsafe fixes say so) |
| `A` | apply every safe fix (asks first) |
| `s` | run the smoke proof of the selected model directory (in the background) |
| `r` | check again |
| `/` | filter by text (rule id, path or message); empty to clear |
| `f` | cycle the severity filter: all, errors, warnings, info |
| `o` | open the file at the finding's line in $EDITOR |
| `?` | this help |
| `q` | quit |
"""


class Confirm(ModalScreen[bool]):
    """Yes/no question; `y` / `n` work too."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, warning: str = "") -> None:
        super().__init__()
        self.question = question
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            if self.warning:
                yield Label(self.warning, id="warning")
            with Horizontal(id="buttons"):
                yield Button("Apply (y)", variant="primary", id="yes")
                yield Button("Cancel (n)", id="no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)


class FilterScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Filter findings by text (rule id, path or message):")
            yield Input(value=self.current, placeholder="e.g. TOK001 or config.json", id="filter-input")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class SmokeScreen(ModalScreen[None]):
    """Progress and live log of the smoke proof, which runs in a worker thread."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, model_path: str, device: str) -> None:
        super().__init__()
        self.model_path = model_path
        self.device = device
        from ttsdoctor.smoke import CHECKS  # the module imports torch and transformers only when it runs

        self.steps = ["loading tokenizer and model", *(f"running {name}" for name, _ in CHECKS)]

    def compose(self) -> ComposeResult:
        with Vertical(id="smoke"):
            yield Label(f"Smoke proof of {self.model_path}", id="smoke-title")
            yield ProgressBar(total=len(self.steps) + 1, show_eta=False, id="smoke-progress")
            yield RichLog(id="smoke-log", wrap=True, markup=False)

    def on_mount(self) -> None:
        self.run_proof()

    @work(thread=True, exclusive=True, group="smoke")
    def run_proof(self) -> None:
        from ttsdoctor import smoke

        log = self.query_one(RichLog)
        bar = self.query_one(ProgressBar)

        def progress(message: str) -> None:
            self.app.call_from_thread(log.write, f"... {message}")
            self.app.call_from_thread(bar.advance, 1)

        try:
            report = smoke.run_smoke(self.model_path, device=self.device, progress=progress)
        except smoke.SmokeUnavailable as exc:
            self.app.call_from_thread(log.write, f"cannot run: {exc}")
            return
        except Exception as exc:  # a crash of the proof is shown, never raised into the UI
            self.app.call_from_thread(log.write, f"the proof crashed: {type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(bar.update, progress=bar.total)
        for line in smoke.format_report(report).splitlines():
            self.app.call_from_thread(log.write, line)
        self.app.call_from_thread(setattr, self.app, "last_smoke", report)

    def action_close(self) -> None:
        self.dismiss(None)


class TTSDoctorApp(App[None]):
    TITLE = "ttsdoctor"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "apply_fix", "Apply fix"),
        Binding("A", "apply_all", "Apply safe fixes"),
        Binding("s", "smoke", "Smoke proof"),
        Binding("r", "recheck", "Re-check"),
        Binding("slash", "filter", "Filter"),
        Binding("f", "severity", "Severity"),
        Binding("o", "open", "Open"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        paths: list[str],
        rules: tuple = ALL_RULES,
        settings: Settings | None = None,
        unsafe_fixes: bool = False,
        device: str = "auto",
    ) -> None:
        super().__init__()
        self.paths = paths
        self.rules = rules
        self.settings = settings
        self.unsafe_fixes = unsafe_fixes
        self.device = device
        self.targets: list[Target] = []
        self.result: engine.CheckResult | None = None
        self.text_filter = ""
        self.severity_filter: Severity | None = None
        self.selected: Finding | None = None
        self.last_smoke: Any = None
        self.checks_run = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Static("checking...", id="summary")
                tree: Tree[Finding | None] = Tree("findings", id="findings")
                tree.show_root = False
                yield tree
            with VerticalScroll(id="right"):
                yield Static("", id="title")
                yield Static("", id="evidence")
                yield Static("", id="diff")
                yield Markdown("", id="doc")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#findings", Tree).focus()
        self.run_check()

    # --- checking (worker) ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="check")
    def run_check(self) -> None:
        worker = get_current_worker()
        targets = discover(self.paths)
        result = engine.run(self.rules, targets, self.settings)
        if not worker.is_cancelled:
            self.call_from_thread(self._show_result, targets, result)

    def _show_result(self, targets: list[Target], result: engine.CheckResult) -> None:
        self.targets, self.result = targets, result
        self.checks_run += 1
        self._populate()

    def _visible(self) -> list[Finding]:
        if self.result is None:
            return []
        needle = self.text_filter.lower()
        out = []
        for f in self.result.findings:
            if self.severity_filter is not None and f.severity is not self.severity_filter:
                continue
            if needle and needle not in f"{f.rule_id} {f.rule_name} {f.location.path} {f.message}".lower():
                continue
            out.append(f)
        return out

    def _group_of(self, finding: Finding) -> str:
        """The target (model directory, training config, source file) that reported a finding."""
        if self.result is None:
            return finding.location.path
        return self.result.target_of.get(finding, finding.location.path)

    def family_of(self, finding: Finding) -> str | None:
        if self.result is None:
            return None
        group = self._group_of(finding)
        for loaded in self.result.loaded:
            if getattr(loaded, "path", None) == group and getattr(loaded, "family", None) is not None:
                return str(loaded.family.name)
        return None

    def _populate(self) -> None:
        tree = self.query_one("#findings", Tree)
        previous = self.selected
        tree.clear()
        visible = self._visible()
        total = self.result.findings if self.result is not None else []
        counts = Counter(f.severity for f in total)
        filters = []
        if self.text_filter:
            filters.append(f"text {self.text_filter!r}")
        if self.severity_filter is not None:
            filters.append(self.severity_filter.value)
        summary = (
            f"{counts[Severity.ERROR]} errors, {counts[Severity.WARNING]} warnings, "
            f"{counts[Severity.INFO]} info in {len(self.targets)} targets"
        )
        if filters:
            summary += f" | showing {len(visible)} ({', '.join(filters)})"
        self.query_one("#summary", Static).update(summary)
        groups: dict[str, list[Finding]] = {}
        for finding in visible:
            groups.setdefault(self._group_of(finding), []).append(finding)
        select_node = None
        for group, findings in groups.items():
            by_severity = Counter(f.severity for f in findings)
            label = Text(group, style="bold")
            label.append(
                " "
                + " ".join(
                    f"{n}{s.value[0].upper()}" for s, n in sorted(by_severity.items(), key=lambda item: item[0].rank)
                ),
                style="dim",
            )
            family = self.family_of(findings[0])
            if family:
                label.append(f"  [{family}]", style="magenta")
            group_node = tree.root.add(label, data=None, expand=True)
            for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO):
                of_severity = [f for f in findings if f.severity is severity]
                if not of_severity:
                    continue
                sev_node = group_node.add(
                    Text(f"{severity.value} ({len(of_severity)})", style=SEVERITY_STYLE[severity]),
                    data=None,
                    expand=True,
                )
                for finding in of_severity:
                    where = os.path.relpath(finding.location.path, group) if finding.location.path != group else ""
                    loc = finding.location
                    line = (f":cell {loc.cell}" if loc.cell else "") + (f":{loc.line}" if loc.line else "")
                    label = Text(f"{finding.rule_id} ", style=SEVERITY_STYLE[severity])
                    label.append(f"{where}{line} ", style="dim")
                    label.append(finding.message[:90])
                    leaf = sev_node.add_leaf(label, data=finding)
                    if previous is not None and finding == previous:
                        select_node = leaf
        if not visible:
            tree.root.add_leaf(
                Text("No findings" + (" match the filter" if total else ": all checks passed"), style="green")
            )
        if select_node is not None:
            tree.move_cursor(select_node)
        self._show_detail(select_node.data if select_node is not None else None)

    # --- detail pane ---------------------------------------------------------------------------

    @on(Tree.NodeHighlighted)
    def highlighted(self, event: Tree.NodeHighlighted) -> None:
        data = event.node.data
        self._show_detail(data if isinstance(data, Finding) else None)

    def _show_detail(self, finding: Finding | None) -> None:
        self.selected = finding
        title, evidence, diff = (
            self.query_one("#title", Static),
            self.query_one("#evidence", Static),
            self.query_one("#diff", Static),
        )
        doc = self.query_one("#doc", Markdown)
        if finding is None:
            title.update("Select a finding to see its rule, evidence and fix.")
            evidence.update("")
            diff.update("")
            doc.update("")
            return
        loc = finding.location
        where = (
            loc.path
            + (f":cell {loc.cell}" if loc.cell else "")
            + (f":{loc.line}:{loc.column or 1}" if loc.line else "")
            + (f"  {loc.pointer}" if loc.pointer and not loc.line else "")
        )
        head = Text(f"{finding.rule_id} {finding.rule_name}", style=SEVERITY_STYLE[finding.severity])
        head.append(f"  [{finding.severity.value}]\n", style="dim")
        head.append(where + "\n", style="bold")
        head.append(finding.message)
        family = self.family_of(finding)
        if family:
            head.append(f"\nfamily: {family}", style="magenta")
        title.update(head)
        lines = [f"{key}: {value}" for key, value in finding.evidence.items()]
        evidence.update(Text("evidence\n", style="bold").append("\n".join(lines) or "(none)"))
        diff.update(self._fix_preview(finding))
        doc.update(read_doc(finding.rule_id) or "")

    def _fix_preview(self, finding: Finding) -> Any:
        fix = finding.fix
        if fix is None:
            return Text("no automatic fix", style="dim")
        header = Text(
            f"fix ({fix.applicability.value}): {fix.title}\n",
            style="bold green" if fix.applicability is Applicability.SAFE else "bold yellow",
        )
        planned = fixer.plan([finding], unsafe=True)
        if planned.empty:
            reason = planned.skipped[0][1] if planned.skipped else "nothing to change"
            return header.append(reason, style="dim")
        try:
            text = fixer.diff(planned)
        except Exception as exc:  # a preview must not take the UI down
            return header.append(f"no preview: {exc}", style="dim")
        from rich.console import Group

        return Group(header, Syntax(text, "diff", theme="ansi_dark", word_wrap=True))

    # --- actions -------------------------------------------------------------------------------

    def action_recheck(self) -> None:
        self.query_one("#summary", Static).update("checking...")
        self.run_check()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        def done(value: str | None) -> None:
            if value is not None:
                self.text_filter = value
                self._populate()

        self.push_screen(FilterScreen(self.text_filter), done)

    def action_severity(self) -> None:
        index = SEVERITY_CYCLE.index(self.severity_filter)
        self.severity_filter = SEVERITY_CYCLE[(index + 1) % len(SEVERITY_CYCLE)]
        self._populate()

    def action_apply_fix(self) -> None:
        finding = self.selected
        if finding is None or finding.fix is None:
            self.notify("The selected finding has no fix.", severity="warning")
            return
        fix = finding.fix
        if fix.applicability is Applicability.DISPLAY_ONLY:
            self.notify("This fix is shown, never applied.", severity="warning")
            return
        unsafe = fix.applicability is Applicability.UNSAFE
        warning = "UNSAFE: this fix changes weights or may change outputs." if unsafe else ""

        def done(yes: bool | None) -> None:
            if yes:
                self.apply_fixes([finding], unsafe=unsafe)

        self.push_screen(Confirm(f"Apply: {fix.title}?", warning), done)

    def action_apply_all(self) -> None:
        if self.result is None:
            return
        safe = [f for f in self._visible() if f.fix is not None and f.fix.applicability is Applicability.SAFE]
        if not safe:
            self.notify("No safe fixes to apply.", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.apply_fixes(safe, unsafe=False)

        self.push_screen(Confirm(f"Apply {len(safe)} safe fix(es)?"), done)

    @work(thread=True, exclusive=True, group="check")
    def apply_fixes(self, findings: list[Finding], unsafe: bool) -> None:
        """Apply, re-check, roll back on a failed re-check (the same loop as `ttsdoctor fix --apply`)."""
        wanted = {fixer.fix_key(f.fix) for f in findings if f.fix is not None}
        report = fixer.fix_and_verify(
            self.rules,
            self.targets,
            unsafe,
            check=lambda: engine.run(self.rules, self.targets, self.settings),
            only=lambda f: f.fix is not None and fixer.fix_key(f.fix) in wanted,
        )
        if report.failure:
            self.call_from_thread(self.notify, report.failure, severity="error", timeout=8)
        else:
            backups = sorted(b for b in report.backups.values() if b)
            message = f"Applied {len(report.applied)} fix(es)." + (f" Backups: {backups[0]}" if backups else "")
            self.call_from_thread(self.notify, message, timeout=8)
        fresh = engine.run(self.rules, self.targets, self.settings)
        self.call_from_thread(self._show_result, self.targets, fresh)

    def action_smoke(self) -> None:
        model = None
        if self.selected is not None:
            group = self._group_of(self.selected)
            if os.path.isdir(group):
                model = group
        if model is None:
            models = [t.path for t in self.targets if t.kind == "model_dir"]
            model = models[0] if models else None
        if model is None:
            self.notify("No model directory to prove.", severity="warning")
            return
        self.push_screen(SmokeScreen(model, self.device))

    def action_open(self) -> None:
        finding = self.selected
        if finding is None:
            return
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
        loc = finding.location
        file_line = loc.file_line if loc.cell is not None else loc.line  # a notebook opens at its .ipynb line
        where = loc.path + (f":{file_line}" if file_line else "")
        if not editor:
            self.notify(f"{where} (set $EDITOR to open it here)")
            return
        command = [*shlex.split(editor), loc.path]
        if file_line:
            command.insert(-1, f"+{file_line}")
        try:
            with self.suspend():
                subprocess.run(command, check=False)
        except SuspendNotSupported:
            self.notify(f"{where} (this terminal cannot hand over to $EDITOR)")
            return
        except OSError as exc:
            self.notify(f"cannot run {editor!r}: {exc.strerror or exc}", severity="error")
            return
        self.action_recheck()


def run_tui(paths: list[str], rules: tuple, settings: Settings | None, unsafe_fixes: bool, device: str) -> None:
    TTSDoctorApp(paths, rules, settings, unsafe_fixes, device).run()
