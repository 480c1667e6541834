"""Checkpoints as people save them, and as attackers craft them.

Every file here is written by the real `torch.save` (or built from its output); every payload is shown to run
under `torch.load(weights_only=False)` in a child process, and never under ttsdoctor.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from collections import OrderedDict

import pytest
import torch

from ttsdoctor import engine
from ttsdoctor.artifacts.pickle_scan import scan_pickle
from ttsdoctor.artifacts.pickles import read_pickle_checkpoint
from ttsdoctor.discover import discover
from ttsdoctor.registry import ALL_RULES

MARKER = "PWNED_BY_TTSDOCTOR_TEST"


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int = 100) -> None:
        super().__init__()
        self.model = torch.nn.Module()
        self.model.embed_tokens = torch.nn.Embedding(vocab, 8)
        self.lm_head = torch.nn.Linear(8, vocab, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight  # tied: one storage, two names
        self.register_buffer("rope", torch.arange(4, dtype=torch.float32))


def _state_dict() -> OrderedDict:
    torch.manual_seed(0)
    return TinyLM().state_dict()


def _flatten_loaded(obj, prefix="", out=None) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {} if out is None else out
    if isinstance(obj, torch.Tensor):
        out[prefix] = (tuple(obj.shape), str(obj.dtype))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten_loaded(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            _flatten_loaded(value, f"{prefix}.{index}" if prefix else str(index), out)
    return out


TORCH_DTYPE = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16", "torch.int64": "I64"}


# --- forms people save -----------------------------------------------------------------------------------


def _lightning(sd):
    return {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict((f"model.{k}", v) for k, v in sd.items()),
        "optimizer_states": [{"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(100, 8)}}}],
        "hyper_parameters": {"lr": 1e-4, "vocab": 100},
    }


SAVED_FORMS = {
    "state-dict": lambda sd: sd,
    "training-checkpoint": lambda sd: {"model": sd, "optimizer": {"state": {}}, "epoch": 3},
    "lightning": _lightning,
    "state_dict-key": lambda sd: {"state_dict": sd},
    "ema": lambda sd: {"ema_model_state_dict": OrderedDict((f"ema_model.{k}", v) for k, v in sd.items()), "step": 9},
    "data-parallel-prefix": lambda sd: OrderedDict((f"module.{k}", v) for k, v in sd.items()),
    "bf16": lambda sd: OrderedDict((k, v.to(torch.bfloat16)) for k, v in sd.items()),
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("form", sorted(SAVED_FORMS))
def test_saved_forms_read_like_torch(tmp_path, form: str, legacy: bool) -> None:
    path = str(tmp_path / "model.pth")
    torch.save(SAVED_FORMS[form](_state_dict()), path, _use_new_zipfile_serialization=not legacy)
    wf = read_pickle_checkpoint(path)
    expected = _flatten_loaded(torch.load(path, weights_only=True))
    assert {n: (t.shape, t.dtype) for n, t in wf.tensors.items()} == {
        n: (shape, TORCH_DTYPE[dtype]) for n, (shape, dtype) in expected.items()
    }
    assert wf.format == ("torch-legacy" if legacy else "torch-zip")
    assert wf.unsafe_globals == () and wf.unchecked == () and wf.ambiguities == ()


def test_state_dict_metadata_is_read_to_the_end(tmp_path) -> None:
    """The `_metadata` attribute arrives by BUILD after every item: the old reader stopped there."""
    sd = _state_dict()
    assert hasattr(sd, "_metadata")
    path = str(tmp_path / "pytorch_model.bin")
    torch.save(sd, path)
    wf = read_pickle_checkpoint(path)
    assert sorted(wf.tensors) == ["lm_head.weight", "model.embed_tokens.weight", "rope"]
    assert wf.tensors["model.embed_tokens.weight"].shape == (100, 8)


def test_argparse_namespace_and_whole_module(tmp_path) -> None:
    path = str(tmp_path / "ckpt.pth")
    torch.save({"model": _state_dict(), "args": argparse.Namespace(lr=1e-4, data="train.csv"), "epoch": 3}, path)
    wf = read_pickle_checkpoint(path)
    assert wf.unsafe_globals == (("argparse", "Namespace"),)
    assert wf.tensors["model.model.embed_tokens.weight"].shape == (100, 8)

    whole = str(tmp_path / "whole.pt")
    torch.save(TinyLM(), whole)
    wf = read_pickle_checkpoint(whole)
    # named as model.state_dict() names them
    assert {n: t.shape for n, t in wf.tensors.items()} == {n: tuple(t.shape) for n, t in TinyLM().state_dict().items()}
    assert ("torch.nn.modules.sparse", "Embedding") in wf.unsafe_globals


# --- payloads ----------------------------------------------------------------------------------------------


def _torch_zip_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rezip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": allowed, and wanted here
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _evil_pickle() -> bytes:
    return pickle.dumps(Evil(), protocol=2)


def _renamed(members, old: str, new: str):
    return [(name.replace(old, new, 1), data) for name, data in members]


def case_state_dict_then_payload() -> bytes:
    return _torch_zip_bytes({"model": _state_dict(), "hook": Evil()})


def case_payload_inside_state_dict() -> bytes:
    sd = _state_dict()
    sd["hook"] = Evil()  # __reduce__ of an object inside the OrderedDict that carries _metadata
    return _torch_zip_bytes(sd)


def case_nested_containers() -> bytes:
    return _torch_zip_bytes({"a": [{"b": (1, {"c": [Evil()]})}], "model": _state_dict()})


def case_member_torch_reads_is_not_first_data_pkl() -> bytes:
    """torch reads <folder of the first entry>/data.pkl; an old reader took the first name ending in data.pkl."""
    evil = _members(_torch_zip_bytes({"model": _state_dict(), "hook": Evil()}))
    benign = _renamed(_members(_torch_zip_bytes(_state_dict())), "archive/", "benign/")
    evil = _renamed(evil, "archive/", "zzz/")
    first = next(m for m in evil if not m[0].endswith(".pkl"))  # zzz/... first: torch's folder is zzz
    benign_pkl = [m for m in benign if m[0].endswith("data.pkl")]
    return _rezip([first, *benign_pkl, *(m for m in evil if m is not first)])


def case_duplicate_member_names() -> bytes:
    """Two archive/data.pkl, the evil one first and the benign one last (what `zipfile.ZipFile.read(name)` returns).
    torch's zip reader finds a name by binary search over the sorted central directory, so which duplicate it reads
    depends on where they sit: with this layout torch 2.13 reads the first, evil one."""
    members = _members(_torch_zip_bytes(_state_dict()))
    benign, rest = members[0], members[1:]
    assert benign[0] == "archive/data.pkl"
    evil = pickle.dumps({"hook": Evil()}, protocol=2)
    return _rezip([("archive/data.pkl", evil), *rest, benign])


def case_raw_pickle_before_zip() -> bytes:
    return _evil_pickle() + _torch_zip_bytes(_state_dict())


def case_two_pickles_benign_first() -> bytes:
    members = _members(_torch_zip_bytes({"hook": Evil(), "model": _state_dict()}))
    benign = pickle.dumps({"ok": 1}, protocol=2)
    return _rezip([("archive/aaa/data.pkl", benign), *members])  # the old reader took the first data.pkl


def case_legacy_payload_in_storage_keys() -> bytes:
    """A pre-1.6 file is five pickles; torch unpickles the fifth (the storage keys) too."""
    buf = io.BytesIO()
    torch.save(_state_dict(), buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    offsets = [0]
    for _ in range(5):
        offsets.append(scan_pickle(raw, offsets[-1]).end)
    keys = pickle.loads(raw[offsets[4] : offsets[5]])
    evil_keys = pickle.dumps(_KeysWithPayload(keys), protocol=2)
    return raw[: offsets[4]] + evil_keys + raw[offsets[5] :]


class _KeysWithPayload(list):
    def __reduce__(self):
        return (_run_then, (os.system, f"touch {MARKER}", list(self)))


def _run_then(fn, arg, value):  # pragma: no cover - only ever unpickled by torch in the proof child
    fn(arg)
    return value


def _stack_global(module: str, name: str, *, trick: str) -> bytes:
    """A protocol-4 pickle calling module.name(command) through STACK_GLOBAL, with the names hidden."""

    def s(text: str) -> bytes:
        data = text.encode()
        return b"\x8c" + bytes([len(data)]) + data

    command = s(f"touch {MARKER}")
    if trick == "memo":  # strings memoized early, fetched back with BINGET
        body = s(module) + b"\x94" + s(name) + b"\x94" + b"0" + b"0" + b"h\x00" + b"h\x01" + b"\x93"
    elif trick == "pop":  # a junk string pushed and popped between the two names
        body = s(module) + s("junk") + b"0" + s(name) + b"\x93"
    else:
        raise ValueError(trick)
    return b"\x80\x04" + body + command + b"\x85" + b"R" + b"."


def case_stack_global_memo() -> bytes:
    return _stack_global("os", "system", trick="memo")


def case_stack_global_pop() -> bytes:
    return _stack_global("os", "system", trick="pop")


def case_payload_after_unreadable_object() -> bytes:
    """The inert rebuild stops at an extension code (EXT1); the payload after it is still vetted."""
    body = b"(" + b"\x82\x01" + _evil_pickle()[2:-1] + b"t" + b"."
    return b"\x80\x02" + body


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}
# where the payload runs under plain torch.load(weights_only=False): the proof that each case is real
# (torch 2.13 refuses a member outside the first entry's folder before unpickling; older releases did not check)
RUNS_UNDER_TORCH = set(CASES) - {"payload_after_unreadable_object", "member_torch_reads_is_not_first_data_pkl"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_payload_is_reported_and_never_runs(tmp_path, monkeypatch, name: str) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "pytorch_model.bin").write_bytes(CASES[name]())
    monkeypatch.chdir(tmp_path)
    findings = engine.run(ALL_RULES, discover([str(model)])).findings
    sec = [f for f in findings if f.rule_id == "SEC001" and f.severity.value == "error"]
    assert sec, [(f.rule_id, f.message) for f in findings]
    assert any(g in sec[0].message for g in ("posix.system", "os.system")), sec[0].message
    assert not (tmp_path / MARKER).exists()
    assert not any("All checks passed" in f.message for f in findings)


def test_each_payload_really_runs_under_torch_load(tmp_path) -> None:
    """One process loads every case, each from its own folder (the payload writes MARKER in the working directory):
    a process per case spent ~4 s importing torch again."""
    names = sorted(RUNS_UNDER_TORCH)
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "pytorch_model.bin").write_bytes(CASES[name]())
    code = (
        "import os, sys, torch; sys.path.insert(0, sys.argv[1]); import test_checkpoints\n"
        "for folder in sys.argv[2:]:\n"
        "    os.chdir(folder)\n"
        "    try:\n        torch.load('pytorch_model.bin', weights_only=False)\n    except Exception:\n        pass\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__), *(str(tmp_path / n) for n in names)],
        capture_output=True,
        timeout=300,
    )
    assert [n for n in names if not (tmp_path / n / MARKER).exists()] == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("member_torch_reads_is_not_first_data_pkl", "second pickle"),
        ("duplicate_member_names", "members are named"),
        ("raw_pickle_before_zip", "zip archive after it"),
        ("two_pickles_benign_first", "second pickle"),
    ],
)
def test_ambiguous_containers_are_a_finding(tmp_path, name: str, expected: str) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(CASES[name]())
    findings = engine.run(ALL_RULES, discover([str(tmp_path)])).findings
    assert any(f.rule_id == "SEC005" and expected in f.message for f in findings), [
        (f.rule_id, f.message) for f in findings
    ]


def test_payload_after_unreadable_object_says_what_was_not_read(tmp_path) -> None:
    (tmp_path / "model.pt").write_bytes(case_payload_after_unreadable_object())
    findings = engine.run(ALL_RULES, discover([str(tmp_path)])).findings
    incomplete = [f for f in findings if f.rule_id == "ART005"]
    assert incomplete and "rebuilding stopped" in incomplete[0].message, [(f.rule_id, f.message) for f in findings]


def test_static_scan_resolves_hidden_names() -> None:
    assert ("posix", "system") not in scan_pickle(case_stack_global_memo()).globals
    assert scan_pickle(case_stack_global_memo()).globals == [("os", "system")]
    assert scan_pickle(case_stack_global_pop()).globals == [("os", "system")]
    # a name computed by a call is not knowable: reported as such
    computed = b"\x80\x04" + b"\x8c\x02os" + b"\x8c\x08builtins\x8c\x03str\x93" + b"\x8c\x06system\x85R" + b"\x93."
    assert ("?", "?") in scan_pickle(computed).globals
    # Python 2 names are vetted as what the unpickler imports
    assert scan_pickle(b"\x80\x02ccommands\ngetoutput\nq\x00.").globals == [("subprocess", "getoutput")]


def test_computed_global_is_an_error(tmp_path) -> None:
    computed = b"\x80\x04" + b"\x8c\x02os" + b"\x8c\x08builtins\x8c\x03str\x93" + b"\x8c\x06system\x85R" + b"\x93."
    (tmp_path / "model.pt").write_bytes(computed)
    findings = engine.run(ALL_RULES, discover([str(tmp_path)])).findings
    assert any(
        f.rule_id == "SEC001" and "computed while loading" in f.message and f.severity.value == "error"
        for f in findings
    )


# --- folders of weights only, LFS pointers ------------------------------------------------------------------


def test_folder_of_pth_files_only_is_checked(tmp_path) -> None:
    run = tmp_path / "ckpts"
    run.mkdir()
    torch.save({"model": _state_dict(), "step": 100}, run / "model_100.pt")
    (run / "model_last.pt").write_bytes(case_state_dict_then_payload())
    result = engine.run(ALL_RULES, discover([str(tmp_path)]))
    assert [c.kind for c in result.loaded] == ["model_dir"]
    assert [f.location.path for f in result.findings if f.rule_id == "SEC001"] == [str(run / "model_last.pt")]


def test_pickles_beside_safetensors_are_vetted(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(4, 2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "optimizer.pt").write_bytes(case_state_dict_then_payload())
    torch.save({"epoch": 1}, tmp_path / "scheduler.pt")
    findings = engine.run(ALL_RULES, discover([str(tmp_path)])).findings
    assert [(f.rule_id, os.path.basename(f.location.path)) for f in findings] == [("SEC001", "optimizer.pt")]


def test_bin_files_that_are_not_checkpoints_are_left_alone(tmp_path) -> None:
    (tmp_path / "data.bin").write_bytes(struct.pack("<100f", *range(100)))
    result = engine.run(ALL_RULES, discover([str(tmp_path)]))
    assert result.findings == []


LFS = "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 4967255940\n"


@pytest.mark.parametrize(
    "name", ["model.safetensors", "pytorch_model.bin", "model.pth", "tokenizer.json", "config.json", "model.gguf"]
)
def test_lfs_pointer_is_one_clear_finding(tmp_path, name: str) -> None:
    (tmp_path / name).write_text(LFS.format("ab" * 32))
    target = str(tmp_path / name) if name.endswith(".gguf") else str(tmp_path)
    result = engine.run(ALL_RULES, discover([target]))
    assert [(f.rule_id, os.path.basename(f.location.path)) for f in result.findings] == [("ART004", name)]
    message = result.findings[0].message
    assert "Git LFS pointer" in message and "4.6 GB" in message and "git lfs pull" in message
    assert "could not run" in message
    assert not result.unreadable  # a clone without LFS is not exit 2


def test_lfs_pointer_shards_of_one_checkpoint_are_one_finding(tmp_path) -> None:
    # a 70B model cloned without git lfs pull (Reflection-Llama-3.1-70B on GitHub: 162 shards) is one warning,
    # not one per shard; other pointers in the folder keep their own
    sizes = (4967255940, 1459617920, 3900000000)
    for i, size in enumerate(sizes, 1):
        (tmp_path / f"model-0000{i}-of-00003.safetensors").write_text(
            LFS.format("ab" * 32).replace("4967255940", str(size))
        )
    (tmp_path / "tokenizer.json").write_text(LFS.format("cd" * 32))
    findings = engine.run(ALL_RULES, discover([str(tmp_path)])).findings
    by_file = {os.path.basename(f.location.path): f for f in findings if f.rule_id == "ART004"}
    assert sorted(by_file) == ["model-00001-of-00003.safetensors", "tokenizer.json"]
    shards = by_file["model-00001-of-00003.safetensors"]
    assert shards.evidence == {"shards": 3, "object_size": sum(sizes)}
    assert "3 weight shards (model-00001-of-00003.safetensors, model-00002-of-00003.safetensors and 1 more)" in (
        shards.message
    )


# --- vocabulary rules and their fix on a torch.save(model.state_dict()) checkpoint ---------------------------


def test_state_dict_checkpoint_vocab_fix_is_proven_by_running_the_model(tmp_path) -> None:
    from conftest import run_main
    from tiny_models import EOT, IM_END, TOK, build
    from transformers import AutoModelForCausalLM

    ids = TOK.get_vocab_size()
    rows = ids - 6  # the tokenizer makes 6 ids the embedding has no row for
    model_dir = tmp_path / "m"
    build(model_dir, pad=EOT, eos=IM_END, rows=rows)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    (model_dir / "model.safetensors").unlink()
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")  # the most common way weights are saved
    before = torch.load(model_dir / "pytorch_model.bin", weights_only=True)

    findings = engine.run(ALL_RULES, discover([str(model_dir)])).findings
    voc = {f.rule_id: f for f in findings if f.rule_id.startswith("VOC")}
    assert "VOC001" in voc and f"{rows} rows" in voc["VOC001"].message.replace(",", ""), voc
    assert voc["VOC001"].fix is not None and voc["VOC001"].fix.applicability.value == "unsafe"

    with pytest.raises(IndexError):
        model(torch.tensor([[ids - 1]]))

    code, out = run_main("fix", str(model_dir), "--apply", "--unsafe-fixes", "--select", "VOC")
    assert code == 0, out
    after = torch.load(model_dir / "pytorch_model.bin", weights_only=True)
    assert type(after) is OrderedDict and hasattr(after, "_metadata")  # saved back as it was
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert after[name].shape[0] >= ids and torch.equal(after[name][:rows], before[name])
    fixed = AutoModelForCausalLM.from_pretrained(str(model_dir))
    logits = fixed(torch.tensor([[ids - 1, EOT]])).logits
    assert logits.shape[-1] == after["lm_head.weight"].shape[0] and torch.isfinite(logits).all()
    assert [
        f.rule_id for f in engine.run(ALL_RULES, discover([str(model_dir)])).findings if f.rule_id == "VOC001"
    ] == []


def test_fix_says_why_a_whole_module_pickle_is_not_resized(tmp_path) -> None:
    from conftest import run_main
    from tokenizers import Tokenizer, models

    model_dir = tmp_path / "m"
    model_dir.mkdir()
    Tokenizer(models.WordLevel({f"t{i}": i for i in range(110)}, unk_token="t0")).save(
        str(model_dir / "tokenizer.json")
    )
    torch.save(TinyLM(vocab=100), model_dir / "model.pt")  # a whole module: rewriting it would mean loading it
    findings = engine.run(ALL_RULES, discover([str(model_dir)])).findings
    voc = [f for f in findings if f.rule_id == "VOC001"]
    assert voc and all(f.fix is not None and f.fix.applicability.value == "display-only" for f in voc)
    assert "pickles more than tensors" in voc[0].fix.title
    code, out = run_main("fix", str(model_dir), "--apply", "--unsafe-fixes", "--select", "VOC001")
    assert code == 1
    assert "VOC001 not fixed automatically: Grow the embedding and head by hand: model.pt pickles more than" in out
    assert "re-save it as a state dict or safetensors" in out
