"""`check --jobs`: the same report as one process, crashes isolated, Ctrl-C clean."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from conftest import FIXTURES, ROOT, run_cli

from ttsdoctor import engine
from ttsdoctor.discover import discover
from ttsdoctor.registry import ALL_RULES


def _tree(tmp_path, copies: int = 6) -> str:
    for i in range(copies):
        shutil.copytree(os.path.join(FIXTURES, "TOK001/bad/outetts-pad-eos-0"), tmp_path / f"m{i}")
    shutil.copytree(os.path.join(FIXTURES, "GEN002/bad/dataloader-batch-without-mask"), tmp_path / "src")
    return str(tmp_path)


def test_parallel_report_is_byte_identical(tmp_path) -> None:
    tree = _tree(tmp_path)
    outputs = {}
    for jobs in ("1", "2", "3"):
        for fmt in ("text", "json", "sarif"):
            code, out, err = run_cli("check", tree, "--jobs", jobs, "--format", fmt, cwd=str(tmp_path))
            assert code == 1 and "Traceback" not in err, err
            outputs[(jobs, fmt)] = out
    for fmt in ("text", "json", "sarif"):
        assert outputs[("1", fmt)] == outputs[("2", fmt)] == outputs[("3", fmt)]


def test_a_target_that_kills_its_worker_is_a_finding(tmp_path, monkeypatch) -> None:
    tree = _tree(tmp_path)
    real_load = engine.load

    def load(target):  # a parsing library that segfaults on one folder
        if target.path.endswith("m3"):
            os._exit(139)
        return real_load(target)

    monkeypatch.setattr(engine, "load", load)
    result = engine.run(ALL_RULES, discover([tree]), jobs=2)
    crashed = [f for f in result.findings if "crashed a worker" in f.message]
    assert [f.location.path for f in crashed] == [os.path.join(tree, "m3")]
    assert {c.path for c in result.loaded} == {t.path for t in discover([tree])}  # every other target checked
    assert sum(1 for f in result.findings if f.rule_id == "TOK001" and "/m5/" in f.location.path) > 0


def test_ctrl_c_stops_cleanly(tmp_path) -> None:
    tree = _tree(tmp_path, copies=150)
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ttsdoctor", "check", tree, "--jobs", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # a shell's background jobs inherit SIGINT ignored, and Python then never raises KeyboardInterrupt:
        # give the child the default disposition a terminal gives it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to the whole process group
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 1:  # finished before the signal arrived on a fast machine
        return
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "Traceback" not in err


def test_modules_of_model_folders_are_imported_before_the_workers_fork() -> None:
    """numpy, msgspec and tokenizers (~0.2 s) are imported once in the parent, not once per worker; a tree of
    source files does not pay for them."""
    code = (
        "import sys\n"
        "from ttsdoctor import engine\n"
        "from ttsdoctor.discover import Target\n"
        "engine._preload([Target('source', 'a.py')])\n"
        "assert not [m for m in engine._MODEL_DIR_MODULES if m in sys.modules], 'source only'\n"
        "engine._preload([Target('source', 'a.py'), Target('model_dir', 'm')])\n"
        "assert all(m in sys.modules for m in engine._MODEL_DIR_MODULES)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_data_model_compares_what_identifies_a_finding_and_crosses_processes() -> None:
    """Findings are equal (and hash alike) when they report the same thing, whatever their evidence or fix;
    targets compare and sort by kind and path, whatever root the user gave. Both go to and from workers by
    pickle, unchanged."""
    import pickle

    from ttsdoctor.discover import Target
    from ttsdoctor.finding import Applicability, Finding, Fix, Location, SetJsonValue, Severity

    loc = Location("config.json", "/pad_token_id", line=3)
    fix = Fix("set it", Applicability.SAFE, (SetJsonValue("config.json", "/pad_token_id", 7),))
    a = Finding("TOK001", "pad-equals-eos", Severity.ERROR, "pad 2 == eos 2", loc, {"pad": 2}, fix)
    b = Finding("TOK001", "pad-equals-eos", Severity.ERROR, "pad 2 == eos 2", loc)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Finding("TOK001", "pad-equals-eos", Severity.WARNING, "pad 2 == eos 2", loc)
    back = pickle.loads(pickle.dumps(a))
    assert back == a and back.fix == fix and back.evidence == {"pad": 2}

    x, y = Target("source", "b.py", root="/one"), Target("source", "b.py", root="/two")
    assert x == y and hash(x) == hash(y)
    assert sorted([Target("source", "c.py"), y, Target("model_dir", "z")]) == [
        Target("model_dir", "z"),
        Target("source", "b.py"),
        Target("source", "c.py"),
    ]
    assert pickle.loads(pickle.dumps(x)).root == "/one"
