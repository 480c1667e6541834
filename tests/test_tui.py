"""The TUI driven through Textual's pilot: what is shown, and what happens to the files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading

from conftest import ROOT
from textual.widgets import Markdown, RichLog, Static, Tree

from ttsdoctor import engine
from ttsdoctor.finding import Finding
from ttsdoctor.tui.app import Confirm, SmokeScreen, TTSDoctorApp

OUTETTS = os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0")


def _copy(tmp_path, src: str = OUTETTS, name: str = "m") -> str:
    shutil.copytree(src, tmp_path / name)
    return str(tmp_path / name)


def _leaves(app: TTSDoctorApp) -> list[Finding]:
    tree = app.query_one("#findings", Tree)
    out = []

    def walk(node):
        for child in node.children:
            if isinstance(child.data, Finding):
                out.append(child.data)
            walk(child)

    walk(tree.root)
    return out


async def _ready(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def _select(pilot, predicate) -> Finding:
    app = pilot.app
    tree = app.query_one("#findings", Tree)
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        if node is not None and isinstance(node.data, Finding) and predicate(node.data):
            tree.move_cursor(node)
            await pilot.pause()
            return node.data
    raise AssertionError("no such finding in the tree")


def _text(app: TTSDoctorApp, selector: str) -> str:
    """What a Static shows, as plain text."""
    from rich.console import Console

    content = app.query_one(selector, Static).content
    if isinstance(content, str):
        return content
    console = Console(width=200, color_system=None)
    with console.capture() as capture:
        console.print(content)
    return capture.get().rstrip("\n")


def run(coro) -> None:
    asyncio.run(coro)


def test_groups_counts_family_and_detail(tmp_path) -> None:
    model = _copy(tmp_path)

    async def scenario() -> None:
        app = TTSDoctorApp([model])
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(pilot)
            assert _text(app, "#summary") == "5 errors, 5 warnings, 0 info in 1 targets"
            group = app.query_one("#findings", Tree).root.children[0]
            assert str(group.label).startswith(model) and "5E 5W" in str(group.label)
            assert "[OuteTTS 0.2/0.3]" in str(group.label)
            finding = await _select(pilot, lambda f: f.rule_id == "TOK001")
            title = _text(app, "#title")
            assert "TOK001 pad-is-eos" in title and "family: OuteTTS 0.2/0.3" in title
            assert "config.json:25:3" in title
            assert "pad: {'id': 0" in _text(app, "#evidence")
            assert '+  "pad_token_id": 272' in _text(app, "#diff") and "fix (safe)" in _text(app, "#diff")
            assert "## Why is this bad?" in app.query_one("#doc", Markdown).source
            assert app.selected == finding

    run(scenario())


def test_filter_by_text_and_severity(tmp_path) -> None:
    model = _copy(tmp_path)

    async def scenario() -> None:
        app = TTSDoctorApp([model])
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(pilot)
            await pilot.press("slash")
            await pilot.press(*"TOK005", "enter")
            await pilot.pause()
            assert {f.rule_id for f in _leaves(app)} == {"TOK005"}
            assert "showing 4 (text 'TOK005')" in _text(app, "#summary")
            await pilot.press("slash", "ctrl+u", "enter")  # clear
            await pilot.press("f")  # errors only
            await pilot.pause()
            assert {f.severity.value for f in _leaves(app)} == {"error"} and len(_leaves(app)) == 5
            await pilot.press("f", "f", "f")  # warnings, info, all
            await pilot.pause()
            assert len(_leaves(app)) == 10

    run(scenario())


def test_apply_fix_asks_first_then_writes_and_rechecks(tmp_path) -> None:
    model = _copy(tmp_path)
    config = os.path.join(model, "config.json")
    original = open(config).read()

    async def scenario() -> None:
        app = TTSDoctorApp([model])
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(pilot)
            await _select(pilot, lambda f: f.rule_id == "TOK001")
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, Confirm) and "Use the existing special token" in app.screen.question
            await pilot.press("n")
            await pilot.pause()
            assert open(config).read() == original
            await pilot.press("a")
            await pilot.pause()
            await pilot.press("y")
            await _ready(pilot)
            assert json.loads(open(config).read())["pad_token_id"] == 272
            assert "TOK001" not in {f.rule_id for f in _leaves(app)}
            assert app.checks_run == 2

    run(scenario())


def test_unsafe_fix_says_so(tmp_path) -> None:
    model = _copy(tmp_path, os.path.join(ROOT, "fixtures/VOC001/bad/tokenizer-above-rows"))

    async def scenario() -> None:
        app = TTSDoctorApp([model])
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(pilot)
            await _select(pilot, lambda f: f.rule_id == "VOC001" and f.location.path.endswith(".safetensors"))
            assert "model.embed_tokens.weight [320, 8] -> [384, 8]" in _text(app, "#diff")
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, Confirm) and app.screen.warning.startswith("UNSAFE")
            await pilot.press("escape")

    run(scenario())


def test_apply_all_safe_fixes_and_recheck(tmp_path) -> None:
    model = _copy(tmp_path)

    async def scenario() -> None:
        app = TTSDoctorApp([model])
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(pilot)
            await pilot.press("A")
            await pilot.pause()
            assert isinstance(app.screen, Confirm)
            await pilot.press("y")
            await _ready(pilot)
            assert _leaves(app) == []
            # an edit outside the app shows up after `r`
            path = os.path.join(model, "config.json")
            data = json.loads(open(path).read())
            data["output_attentions"] = True
            with open(path, "w") as fh:
                json.dump(data, fh, indent=2)
            await pilot.press("r")
            await _ready(pilot)
            assert [f.rule_id for f in _leaves(app)] == ["ATT001"]

    run(scenario())


def test_first_screen_appears_before_the_check_finishes(tmp_path, monkeypatch) -> None:
    model = _copy(tmp_path)
    release = threading.Event()
    real = engine.run

    def slow(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run", slow)

    async def scenario() -> None:
        app = TTSDoctorApp([model])
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause()
            assert _text(app, "#summary") == "checking..."
            await pilot.press("question_mark")  # the interface answers while the check runs
            await pilot.pause()
            assert "ttsdoctor keys" in app.screen.query_one(Markdown).source
            await pilot.press("escape")
            release.set()
            await _ready(pilot)
            assert _text(app, "#summary").startswith("5 errors")

    run(scenario())


def test_smoke_runs_in_a_worker_with_progress_and_log(tmp_path) -> None:
    from tiny_models import EOT, IM_END, build

    model = build(tmp_path / "m", pad=IM_END, eos=IM_END)

    async def scenario() -> None:
        app = TTSDoctorApp([model], device="cpu")
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(pilot)
            await pilot.press("s")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SmokeScreen)
            await screen.workers.wait_for_complete()
            await pilot.pause()
            log = "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)
            assert "loading tokenizer and model" in log
            assert "FAIL  batch-consistency" in log and "FAILED" in log
            assert app.last_smoke is not None and not app.last_smoke.passed
            assert screen.query_one("#smoke-progress").percentage == 1.0

    del EOT
    run(scenario())


def test_main_screen_snapshot(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _ready(pilot)
        await pilot.press("down", "down")
        await pilot.pause()

    os.chdir(ROOT)
    app = TTSDoctorApp(["fixtures/TOK001/bad/outetts-pad-eos-0"])
    assert snap_compare(app, terminal_size=(140, 40), run_before=run_before)


def test_open_names_the_location(tmp_path, monkeypatch) -> None:
    model = _copy(tmp_path)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)

    async def scenario() -> None:
        app = TTSDoctorApp([model])
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(pilot)
            await _select(pilot, lambda f: f.rule_id == "TOK001" and f.location.path.endswith("/config.json"))
            await pilot.press("o")
            await pilot.pause()
            messages = [n.message for n in app._notifications]
            assert any(m.startswith(f"{model}/config.json:25") and "$EDITOR" in m for m in messages), messages
            monkeypatch.setenv("EDITOR", "true")
            await pilot.press("o")  # headless: the terminal cannot be handed over, which is said, not raised
            await pilot.pause()
            assert any("cannot hand over" in n.message for n in app._notifications)

    run(scenario())
