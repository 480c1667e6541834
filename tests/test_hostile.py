"""Broken and hostile inputs: a clear finding naming the file, the right exit code, no traceback,
bounded time and memory, no file changed, nothing executed, no network, no writes outside the target."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest
from conftest import FIXTURES, ROOT, run_main

HOSTILE = os.path.join(FIXTURES, "hostile")
with open(os.path.join(HOSTILE, "cases.json"), encoding="utf-8") as _fh:
    CASES = json.load(_fh)
MAX_SECONDS = 30  # a hang detector, not a speed goal: the slowest case takes ~2 s on a quiet machine
MAX_RSS_MB = 600
ADDRESS_SPACE = 1 << 30  # each run is a fresh process under a 1 GiB memory limit: a bomb is a MemoryError there


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _digest(root: str) -> dict[str, str]:
    out = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                out[os.path.relpath(path, root)] = "special"
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
            out[os.path.relpath(path, root)] = digest.hexdigest()
    return out


_WRAPPER = """
import sys
from ttsdoctor.cli import main
try:
    code = main(sys.argv[2:])
finally:
    # VmHWM is this process's own peak (ru_maxrss would include the forking parent's)
    peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
    with open(sys.argv[1], "w") as fh:
        fh.write(peak[0] if peak else "0")
raise SystemExit(code)
"""


def _run(args: list[str], cwd: str) -> tuple[int, str, str, float, float]:
    """Run ttsdoctor in a fresh process: (exit code, stdout, stderr, seconds, peak RSS of that process in MB)."""
    env = {**os.environ, "PYTHONPATH": ROOT, "NO_COLOR": "1"}
    env.pop("TTSDOCTOR_DEBUG", None)
    rss_file = os.path.join(cwd, ".rss")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, rss_file, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env=env,
            timeout=MAX_SECONDS,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"ttsdoctor {' '.join(args)} did not finish in {MAX_SECONDS} s") from None
    seconds = time.perf_counter() - start
    with open(rss_file) as fh:
        rss = int(fh.read()) / 1024
    os.remove(rss_file)
    return proc.returncode, proc.stdout, proc.stderr, seconds, rss


def _check_case(workdir: str, target: str, expect: dict) -> None:
    before = _digest(workdir)
    code, out, err, seconds, rss = _run(["check", target, "--format", "json"], cwd=workdir)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert code == expect["exit"], (code, out, err)
    findings = json.loads(out)["findings"]
    matching = [
        f
        for f in findings
        if f["code"] == expect["code"] and expect["path"] in f["path"] and expect["message"] in f["message"]
    ]
    assert matching, findings
    assert 0 < rss < MAX_RSS_MB and seconds < MAX_SECONDS, (seconds, rss)
    assert _digest(workdir) == before, "a check changed a file"
    code, out, err, _, _ = _run(["fix", target], cwd=workdir)
    assert "Traceback" not in err and code in (0, 1, 2), err
    assert _digest(workdir) == before, "a dry-run fix changed a file"


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hostile_case(case: dict, tmp_path) -> None:
    shutil.copytree(os.path.join(HOSTILE, case["name"]), tmp_path / case["name"])
    target = os.path.join(case["name"], case["target"]) if case["target"] else case["name"]
    _check_case(str(tmp_path), target, case)
    assert not list(tmp_path.rglob("PWNED*")), "a pickle ran its command"


def _model(tmp_path, name: str = "m") -> str:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "tokenizer_config.json").write_text('{"pad_token": "<pad>"}')
    return str(directory)


def test_symlink_loop(tmp_path) -> None:
    model = _model(tmp_path)
    os.symlink("config.json", os.path.join(model, "config.json"))
    _check_case(str(tmp_path), "m", {"exit": 2, "code": "ART001", "message": "symbolic links", "path": "config.json"})


def test_fifo_named_config_json_does_not_block(tmp_path) -> None:
    model = _model(tmp_path)
    os.mkfifo(os.path.join(model, "config.json"))
    _check_case(
        str(tmp_path), "m", {"exit": 2, "code": "ART001", "message": "not a regular file", "path": "config.json"}
    )


def test_fifo_named_train_yaml_in_a_tree_does_not_block(tmp_path) -> None:
    model = _model(tmp_path)
    os.mkfifo(os.path.join(model, "train.yaml"))
    os.mkfifo(os.path.join(model, "weights.bin"))
    _, out, err, seconds, _ = _run(["check", "m", "--format", "json"], cwd=str(tmp_path))
    assert "Traceback" not in err and seconds < MAX_SECONDS
    assert any("not a regular file" in f["message"] for f in json.loads(out)["findings"]), out


def test_fix_never_writes_through_a_symlinked_backups_folder(tmp_path) -> None:
    from conftest import run_main

    model = tmp_path / "m"
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), model)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, model / ".ttsdoctor-backups")  # committed by a hostile repository
    before = _digest(str(model))
    code, _ = run_main("fix", str(model), "--apply")
    assert code == 2
    assert os.listdir(elsewhere) == [] and _digest(str(model)) == before


def test_unreadable_folder_in_a_tree_is_reported(tmp_path, monkeypatch) -> None:
    model = _model(tmp_path)
    real_walk = os.walk

    def walk(top, *args, onerror=None, **kwargs):  # CI runs as root: simulate a folder it cannot list
        for entry in real_walk(top, *args, onerror=onerror, **kwargs):
            yield entry
            if entry[0] == str(tmp_path) and onerror is not None:
                onerror(PermissionError(13, "Permission denied", os.path.join(str(tmp_path), "private")))

    monkeypatch.setattr(os, "walk", walk)
    from ttsdoctor import engine
    from ttsdoctor.discover import discover
    from ttsdoctor.registry import ALL_RULES

    result = engine.run(ALL_RULES, discover([str(tmp_path)]))
    assert any(f.rule_id == "ART001" and f.location.path.endswith("private") for f in result.findings)
    assert os.path.isdir(model)


def test_header_of_hundreds_of_megabytes(tmp_path) -> None:
    model = _model(tmp_path)
    with open(os.path.join(model, "model.safetensors"), "wb") as fh:
        fh.write(struct.pack("<Q", 400 << 20) + b"{")
        fh.truncate(8 + (400 << 20) + 16)  # sparse: the header really is that long
    _check_case(str(tmp_path), "m", {"exit": 2, "code": "ART001", "message": "above the", "path": "model.safetensors"})


def test_unreadable_permissions(tmp_path, monkeypatch) -> None:
    """CI runs as root, who reads any file: the operating system's refusal is simulated for one path."""
    model = _model(tmp_path)
    locked = os.path.join(model, "config.json")
    with open(locked, "w") as fh:
        fh.write('{"model_type": "qwen2"}')
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, *args, **kwargs)

    import builtins

    monkeypatch.setattr(builtins, "open", guarded_open)
    code, out = run_main("check", model, "--format", "json")
    monkeypatch.setattr(builtins, "open", real_open)
    assert code == 2
    finding = next(f for f in json.loads(out)["findings"] if f["code"] == "ART001")
    assert finding["path"] == locked and finding["message"] == "permission denied"


def test_no_network_during_check_fix_and_smoke(tmp_path, monkeypatch) -> None:
    attempts = []

    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            attempts.append(args)
            raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "socket", NoSocket)
    monkeypatch.setattr(
        socket,
        "create_connection",
        lambda *a, **k: attempts.append(a) or (_ for _ in ()).throw(OSError("network disabled by the test")),
    )
    shutil.copytree(os.path.join(FIXTURES, "TOK001/bad/outetts-pad-eos-0"), tmp_path / "m")
    assert run_main("check", str(tmp_path / "m"))[0] == 1
    assert run_main("fix", str(tmp_path / "m"), "--apply")[0] == 0
    from tiny_models import EOT, IM_END, build

    model = build(tmp_path / "tiny", pad=EOT, eos=IM_END)
    code, out = run_main("smoke", model)
    assert code == 0, out
    assert attempts == []


def test_fix_writes_only_inside_the_target_and_its_backups(tmp_path) -> None:
    project = tmp_path / "project"
    shutil.copytree(os.path.join(FIXTURES, "VOC001/bad/chatterbox-amharic-887"), project)
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    _, out = run_main("fix", str(project / "config" / "training_config.yaml"), "--apply")
    assert "fixed VOC001" in out
    changed = {p for p in tmp_path.rglob("*") if p.is_file() and before.get(p) != p.stat().st_mtime_ns}
    allowed = {project / "config" / "training_config.yaml"}
    assert {p for p in changed if ".ttsdoctor-backups" not in p.parts} == allowed
    assert outside.read_text() == "untouched"


def test_permission_denied_on_the_second_of_three_files(tmp_path, monkeypatch) -> None:
    from ttsdoctor import fsio

    model = tmp_path / "m"
    shutil.copytree(os.path.join(FIXTURES, "TOK001/bad/qwen2-pad-in-eos-list"), model)
    before = _digest(str(model))
    real = fsio.atomic_write
    calls = []

    def denied(path, write):
        calls.append(path)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", path)
        real(path, write)

    monkeypatch.setattr(fsio, "atomic_write", denied)
    code, out = run_main("fix", str(model), "--apply", "--select", "TOK001")
    monkeypatch.setattr(fsio, "atomic_write", real)
    assert code == 2
    assert len({c for c in calls[:3]}) >= 2
    after = {k: v for k, v in _digest(str(model)).items() if not k.startswith(".ttsdoctor-backups")}
    assert after == before  # every file exactly as before
    code, out = run_main("fix", str(model), "--apply", "--select", "TOK001")
    assert code == 0 and "fixed TOK001" in out  # and the same fix applies cleanly afterwards


def test_second_fix_on_the_same_folder_waits_its_turn(tmp_path, capsys) -> None:
    from conftest import run_main

    from ttsdoctor import fixer

    model = tmp_path / "m"
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), model)
    before = _digest(str(model))
    with fixer.folder_locks([str(model)]):  # another run holds the folder
        code, _ = run_main("fix", str(model), "--apply")
    assert code == 2 and _digest(str(model)) == before
    assert "another ttsdoctor fix is running" in capsys.readouterr().err


def test_a_file_changed_after_planning_is_never_overwritten(tmp_path, monkeypatch) -> None:
    from ttsdoctor import engine, fixer
    from ttsdoctor.discover import discover
    from ttsdoctor.fsio import Transaction
    from ttsdoctor.registry import ALL_RULES

    model = tmp_path / "m"
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), model)
    planned = fixer.plan(engine.run(ALL_RULES, discover([str(model)])).findings)
    config = model / "config.json"
    replaced = config.read_text().replace("{", "{\n", 1)
    os.unlink(config)
    config.write_text(replaced)  # another program replaced the file between the plan and the write
    with pytest.raises(fixer.FixFailed, match="changed since it was read"):
        fixer.write(planned, Transaction())
    assert config.read_text() == replaced


def test_hostile_corpus_is_what_its_generator_writes(tmp_path) -> None:
    """The committed corpus is reproducible byte for byte: generated again in a scratch copy, nothing differs."""
    scratch = tmp_path / "hostile"
    scratch.mkdir()
    shutil.copy(os.path.join(HOSTILE, "_make_hostile.py"), scratch)
    subprocess.run([sys.executable, str(scratch / "_make_hostile.py")], check=True, capture_output=True)
    committed = {k: v for k, v in _digest(HOSTILE).items() if "__pycache__" not in k}
    assert _digest(str(scratch)) == committed


def _gguf_with(path: str, key: str, item_type: int, items: bytes, count: int) -> None:
    """A GGUF file with one array too large to commit, built with the corpus generator's own helpers."""
    sys.path.insert(0, HOSTILE)
    try:
        from _make_hostile import gguf, gguf_kv, gguf_string
    finally:
        sys.path.remove(HOSTILE)
    arch = gguf_kv("general.architecture", 8, gguf_string("qwen2"))
    array = gguf_kv(key, 9, struct.pack("<IQ", item_type, count) + items)
    with open(path, "wb") as fh:
        fh.write(gguf([arch, array]))


@pytest.mark.parametrize(
    ("item_type", "count", "width", "expect"),
    [
        (0, 8_000_000, 1, "gguf_array_items limit"),  # 8M uint8 values: refused before a byte is decoded
        (8, 2_000_000, 8, None),  # 2M empty strings: within budget, skipped in bounded time
    ],
)
def test_gguf_huge_arrays_take_bounded_time(tmp_path, item_type, count, width, expect) -> None:
    model = tmp_path / "m"
    model.mkdir()
    _gguf_with(str(model / "model.gguf"), "tokenizer.ggml.merges", item_type, b"\0" * (count * width), count)
    code, out, err, seconds, rss = _run(["check", "m/model.gguf", "--format", "json"], cwd=str(tmp_path))
    assert "Traceback" not in err and seconds < 20 and rss < MAX_RSS_MB, (seconds, rss, err)
    messages = [f["message"] for f in json.loads(out)["findings"]]
    if expect:
        assert code == 2 and any(expect in m for m in messages), messages
    else:
        assert not any(f.startswith("GGUF header") for f in messages), messages


def test_a_budget_names_its_setting_and_the_setting_raises_it(tmp_path, monkeypatch) -> None:
    from ttsdoctor.artifacts.gguf_file import load_gguf

    path = os.path.join(HOSTILE, "gguf-array-count-beyond-budget", "model.gguf")
    (error,) = load_gguf(path).errors
    assert "above the gguf_array_items limit of 3000000 items (raise it with TTSDOCTOR_LIMIT_GGUF_ARRAY_ITEMS=N)" in (
        error.problem
    )
    monkeypatch.setenv("TTSDOCTOR_LIMIT_GGUF_ARRAY_ITEMS", str(10**13))
    (error,) = load_gguf(path).errors  # within the raised budget, the file is still checked against its size
    assert "past the end of the" in error.problem and "limit" not in error.problem


def test_six_hundred_thousand_tensors_are_refused_before_parsing(tmp_path) -> None:
    model = _model(tmp_path)
    header = ",".join(
        f'"t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{4 * i},{4 * i + 4}]}}' for i in range(600_000)
    )
    raw = ("{" + header + "}").encode()
    with open(os.path.join(model, "model.safetensors"), "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * 600_000))
    _check_case(
        str(tmp_path),
        "m",
        {"exit": 2, "code": "ART001", "message": "above the safetensors_tensors limit", "path": "model.safetensors"},
    )


def test_links_leading_out_of_a_checked_tree_are_reported_and_never_written_through(tmp_path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(os.path.join(FIXTURES, "TOK001/bad/outetts-pad-eos-0"), outside)
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(outside, tree / "linked-model")
    shutil.copytree(outside, tree / "m", ignore=shutil.ignore_patterns("config.json"))
    os.symlink(outside / "config.json", tree / "m" / "config.json")
    os.symlink(tree / "m", tree / "inside-link")  # a link within the tree is fine
    # vendored Matcha-TTS: `data` links to its author's home folder, absent here; nothing is read through it
    os.symlink(tmp_path / "home" / "author" / "data", tree / "data")
    before = _digest(str(outside))
    code, out = run_main("check", str(tree), "--format", "json", "--select", "SEC004")
    findings = json.loads(out)["findings"]
    assert code == 1 and sorted(os.path.relpath(f["path"], tree) for f in findings) == [
        "data",
        "linked-model",
        "m/config.json",
    ]
    dangling, folder, file = findings
    assert dangling["severity"] == "info" and "does not exist on this machine" in dangling["message"]
    assert "not followed, nothing in it was checked" in folder["message"] and folder["severity"] == "warning"
    assert "read through the link" in file["message"] and file["severity"] == "warning"
    code, _ = run_main("fix", str(tree), "--apply")
    assert code == 2 and _digest(str(outside)) == before and os.path.islink(tree / "m" / "config.json")


def test_a_text_file_rewritten_in_place_with_the_same_size_and_time_is_never_overwritten(tmp_path) -> None:
    from ttsdoctor import engine, fixer
    from ttsdoctor.discover import discover
    from ttsdoctor.fsio import Transaction
    from ttsdoctor.registry import ALL_RULES

    model = tmp_path / "m"
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), model)
    planned = fixer.plan(engine.run(ALL_RULES, discover([str(model)])).findings)
    config = model / "config.json"
    stat = config.stat()
    edited = config.read_text().replace('"pad_token_id": 0', '"pad_token_id": 9')  # same length, same inode
    with open(config, "r+") as fh:
        fh.write(edited)
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same modification time
    with pytest.raises(fixer.FixFailed, match="changed since it was read"):
        fixer.write(planned, Transaction())
    assert config.read_text() == edited
