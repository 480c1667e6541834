from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
os.environ.setdefault("TTSDOCTOR_DEBUG", "1")  # a crashing rule fails the test instead of being reported


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
