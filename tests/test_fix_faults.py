"""`fix --apply` killed at every step boundary: the next run puts the folder back entirely or finishes it.

A multi-file fix (config.json and the weights) runs in a fresh process whose `fsio.step` hook sends it
SIGKILL at the N-th boundary (a backup made, the journal written, a temporary file written, a file replaced,
the journal committed), for N = 1, 2, ... until a run completes. After each kill: `fix --rollback` leaves
every file exactly as before and no temporary file; `fix --apply` (the next run) leaves every file exactly
as an uninterrupted fix does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT, run_main

CASE = os.path.join(FIXTURES, "VOC001/bad/tokenizer-above-rows")  # config.json + model.safetensors
ARGS = ["--apply", "--unsafe-fixes", "--jobs", "1"]

_KILLER = """
import os, signal, sys
from ttsdoctor import fsio
from ttsdoctor.cli import main
steps = []
def step(name, path):
    steps.append(name)
    if len(steps) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
fsio.step = step
raise SystemExit(main(sys.argv[2:]))
"""


def _state(folder: str) -> dict[str, str]:
    """Every file outside the backups folder, by content."""
    out = {}
    for directory, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".ttsdoctor-backups"]
        for name in files:
            with open(os.path.join(directory, name), "rb") as fh:
                out[os.path.relpath(os.path.join(directory, name), folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _killed_at(step: int, folder: str) -> bool:
    env = {**os.environ, "PYTHONPATH": ROOT, "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(step), "fix", folder, *ARGS],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_a_fix_killed_at_any_step_is_rolled_back_or_finished(tmp_path) -> None:
    before = _state(CASE)
    reference = tmp_path / "reference"
    shutil.copytree(CASE, reference)
    assert run_main("fix", str(reference), *ARGS)[0] in (0, 1)
    after = _state(str(reference))
    assert after != before and set(after) == set(before)
    kills = 0
    for step in range(1, 40):
        crashed = tmp_path / f"crash-{step}"
        shutil.copytree(CASE, crashed)
        if not _killed_at(step, str(crashed)):
            assert _state(str(crashed)) == after  # the run that was not killed finished the fix
            break
        kills += 1
        middle = _state(str(crashed))
        assert middle in (before, after) or any(k.endswith(".ttsdoctor-tmp") for k in middle) or middle != before
        resumed = tmp_path / f"resumed-{step}"
        shutil.copytree(crashed, resumed, symlinks=True)
        # rolled back: every file as before, no temporary file left
        code, out = run_main("fix", str(crashed), "--rollback")
        assert code == 0, out
        assert _state(str(crashed)) == before, (step, out)
        # or finished by the next run
        code, out = run_main("fix", str(resumed), *ARGS)
        assert code in (0, 1) and "Applied" in out, out
        assert _state(str(resumed)) == after, (step, out)
    assert kills >= 6  # backups x2, journal, temporary x2, replaced x2 ...: every boundary was hit


@pytest.mark.slow
def test_check_warns_about_an_interrupted_fix(tmp_path, capsys) -> None:
    folder = tmp_path / "m"
    shutil.copytree(CASE, folder)
    assert _killed_at(4, str(folder))  # after the journal: the folder may be half-written
    run_main("check", str(folder))
    assert "an interrupted fix left" in capsys.readouterr().err
    assert run_main("fix", str(folder), "--rollback")[0] == 0
    capsys.readouterr()
    run_main("check", str(folder))
    assert "interrupted" not in capsys.readouterr().err


def test_rollback_undoes_the_last_fix_unless_a_file_changed_since(tmp_path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(CASE, folder)
    before = _state(CASE)
    assert run_main("fix", str(folder), *ARGS)[0] in (0, 1)
    code, out = run_main("fix", str(folder), "--rollback")
    assert code == 0 and "rolled back the last fix" in out
    assert _state(str(folder)) == before
    assert run_main("fix", str(folder), *ARGS)[0] in (0, 1)
    with open(folder / "config.json", "a") as fh:
        fh.write("\n")  # edited by hand after the fix
    edited = _state(str(folder))
    code, _ = run_main("fix", str(folder), "--rollback")
    assert code == 2 and _state(str(folder)) == edited


def test_a_hostile_journal_cannot_make_recovery_write_outside(tmp_path) -> None:
    import json

    folder = tmp_path / "m"
    shutil.copytree(CASE, folder)
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    stamp = folder / ".ttsdoctor-backups" / "x"
    stamp.mkdir(parents=True)
    (stamp / "outside.txt").write_text("payload")
    files = [{"path": "../outside.txt", "backup": ".ttsdoctor-backups/x/outside.txt"}]
    (stamp / "journal.json").write_text(json.dumps({"state": "writing", "files": files}))
    assert run_main("fix", str(folder), "--rollback")[0] == 0
    assert outside.read_text() == "untouched"


def test_disk_full_rolls_back_without_copying_and_without_a_traceback(tmp_path, monkeypatch, capsys) -> None:
    import errno

    from ttsdoctor import fsio

    folder = tmp_path / "m"
    shutil.copytree(CASE, folder)
    before = _state(str(folder))
    real_write, writes = fsio.atomic_write, []

    def full(path, write):
        if not path.endswith("journal.json"):
            writes.append(path)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", path)
        real_write(path, write)

    copies = []
    monkeypatch.setattr(fsio, "atomic_write", full)
    monkeypatch.setattr(fsio, "_copy_from", lambda *a: copies.append(a))
    code, _ = run_main("fix", str(folder), *ARGS)
    assert code == 2 and "No space left on device" in capsys.readouterr().err
    assert _state(str(folder)) == before and copies == []  # restored by link and rename: nothing copied
    assert not [n for n in os.listdir(folder) if n.endswith(".ttsdoctor-tmp")]
