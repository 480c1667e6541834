from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
os.environ.setdefault("TTSDOCTOR_DEBUG", "1")  # a crashing rule fails the test instead of being reported
# An adapter's base is looked up in the Hugging Face cache: the developer's own cache must not change results
os.environ["HF_HUB_CACHE"] = os.path.join(ROOT, "fixtures", "_empty_hub_cache")
os.environ["HF_HUB_OFFLINE"] = "1"


def run_cli(*args: str, cwd: str | None = None) -> tuple[int, str, str]:
    """Run `ttsdoctor ARGS` in a fresh interpreter, as a user would."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR",)}
    env["NO_COLOR"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "ttsdoctor", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_main(*args: str) -> tuple[int, str]:
    """Run the CLI in-process (fast); returns (exit code, stdout)."""
    from ttsdoctor.cli import main

    out = io.StringIO()
    code = main(list(args), out=out)
    return code, out.getvalue()


@pytest.fixture
def fixture_path():
    def get(*parts: str) -> str:
        return os.path.join(FIXTURES, *parts)

    return get


# Modules that build torch models, spawn many processes, drive the TUI or fuzz: `pytest -m "not slow"` (the
# contributor's quick loop) skips them, and single slow tests elsewhere carry @pytest.mark.slow. The fast
# subset still runs every rule on its good and bad fixtures (tests/test_fixtures.py).
SLOW_MODULES = frozenset(
    {"test_workflow", "test_hostile", "test_checkpoints", "test_smoke", "test_tui", "test_parallel", "test_properties"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
