"""`ttsdoctor check hf://ORG/NAME`: Hub repositories checked without downloading their weights.

Every test talks to tests/fake_hub.py, a local server speaking the part of the Hub API huggingface_hub uses, at
HF_ENDPOINT; nothing reaches the internet. The server counts the bytes it sends.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil

import pytest
from conftest import FIXTURES, ROOT
from fake_hub import TOKEN, FakeHub
from fixture_cases import Case, all_cases, case_env

from ttsdoctor import cli

GB = 1 << 30


@pytest.fixture(scope="module")
def hub():
    server = FakeHub().start()
    yield server
    server.stop()


@pytest.fixture
def env(hub, tmp_path, monkeypatch):
    """A fresh huggingface_hub cache and ttsdoctor cache, online, pointed at the fake Hub, with no token."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TTSDOCTOR_CACHE", str(tmp_path / "ttsdoctor-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    return tmp_path


def check(*args: str, capsys=None) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli.main(["check", *args], out=out)
    err = capsys.readouterr().err if capsys is not None else ""
    return code, out.getvalue(), err


def check_json(*args: str) -> tuple[int, dict]:
    code, out, _ = check(*args, "--format", "json")
    return code, json.loads(out)


# --- the same findings as a local check -----------------------------------------------------------------------------


def _plain(case: Case) -> bool:
    """A case a Hub repository can hold as it is: regular files only, no settings or environment of its own (a Hub
    check reads its settings from where it runs, not from the repository)."""
    if os.path.exists(case.path + ".env.json"):
        return False
    for walked, dirs, names in os.walk(case.path):
        for name in dirs + names:
            path = os.path.join(walked, name)
            if os.path.islink(path) or name.startswith(".") or name in ("pyproject.toml", "ttsdoctor.toml"):
                return False
            if name in names and not os.path.isfile(path):
                return False
    return True


PLAIN_CASES = [c for c in all_cases() if _plain(c)]
# Rules that read tensor data (rows of an embedding): a Hub check reads headers only, and says so
READS_ROWS = {"VOC006"}


def _normalised(findings: list[dict], root: str) -> set[tuple]:
    def rel(text: str) -> str:
        # where a missing path was looked for includes the working directory of a local check
        text = re.sub(r"\(tried [^;]*;", "(tried ...;", text)
        return text.replace(root + "/", "").replace(root, ".")

    return {
        (f["code"], f["severity"], rel(f["path"]), f["line"], f["column"], f["pointer"], rel(f["message"]))
        for f in findings
    }


@pytest.mark.parametrize("case", PLAIN_CASES, ids=str)
def test_hub_check_finds_what_a_local_check_finds(case: Case, hub, env) -> None:
    repo_id = f"fixtures/{case.rule_id}-{case.kind}-{case.name}"[:96].rstrip("-_.")
    hub.add(repo_id, case.path)
    with case_env(case):
        local_code, local = check_json(case.path)
        hub_code, remote = check_json(f"hf://{repo_id}", "--download-pickles")
    label = f"hf://{repo_id}@{hub.repos[repo_id].sha}"
    expected = _normalised(local["findings"], case.path)
    got = _normalised(remote["findings"], label)
    assert got <= expected, f"only in the Hub check: {got - expected}"
    missing = expected - got
    assert {m[0] for m in missing} <= READS_ROWS, f"only in the local check: {missing}"
    if not missing:
        assert hub_code == local_code
    assert all(f["fix"] is None or f["fix"]["applicability"] == "display-only" for f in remote["findings"])
    assert remote["remote"][0]["commit"] == hub.repos[repo_id].sha


def test_every_kind_of_case_is_compared() -> None:
    """The comparison above covers safetensors, GGUF, pickles, adapters, sources and training configs."""
    names = {n for c in PLAIN_CASES for _w, _d, files in os.walk(c.path) for n in files}
    for suffix in (".safetensors", ".gguf", ".bin", ".pt", ".py", ".ipynb", ".yaml", "adapter_config.json"):
        assert any(n.endswith(suffix) for n in names), suffix
    assert len(PLAIN_CASES) > 100


# --- 20 GB without downloading it -----------------------------------------------------------------------------------


def _sparse_safetensors(path: str, tensors: dict[str, tuple[str, list[int]]]) -> int:
    """A safetensors file with this header and no data written (a hole): the benchmark's own writer."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ttsdoctor_bench", os.path.join(ROOT, "bench", "run.py"))
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.write_sparse_safetensors(path, tensors)


def _orpheus_20gb(folder: str, rows: int) -> int:
    """A folder with the VOC001 fixture's tokenizer and config, and two shards of 10.3 GB (sparse files)."""
    source = os.path.join(FIXTURES, "VOC001", "bad", "tokenizer-above-rows")
    os.makedirs(folder)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(source, name), folder)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
        config = json.load(fh)
    config["vocab_size"] = rows
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)
    layers = {f"model.layers.{i}.mlp.up_proj.weight": ("BF16", [16384, 6144]) for i in range(110)}
    first = {"model.embed_tokens.weight": ("BF16", [rows, 3072]), **dict(list(layers.items())[:55])}
    second = {"lm_head.weight": ("BF16", [rows, 3072]), **dict(list(layers.items())[55:])}
    total = _sparse_safetensors(os.path.join(folder, "model-00001-of-00002.safetensors"), first)
    total += _sparse_safetensors(os.path.join(folder, "model-00002-of-00002.safetensors"), second)
    weight_map = {name: "model-00001-of-00002.safetensors" for name in first}
    weight_map.update({name: "model-00002-of-00002.safetensors" for name in second})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh)
    return total


def test_a_20gb_repository_costs_its_headers(hub, env, capsys) -> None:
    folder = str(env / "orpheus-20gb")
    total = _orpheus_20gb(folder, rows=320)
    assert total > 20 * GB
    hub.add("canopylabs/orpheus-20gb", folder)
    code, out, err = check("hf://canopylabs/orpheus-20gb", capsys=capsys)
    assert code == 1, err
    label = f"hf://canopylabs/orpheus-20gb@{hub.repos['canopylabs/orpheus-20gb'].sha}"
    # the tokenizer's 339 ids against the 320 rows read from the shard headers
    assert f"{label}/config.json:" in out and "VOC001" in out and "339 ids" in out
    sent = hub.bytes_sent("canopylabs/orpheus-20gb")
    assert sent < total / 1000, (sent, total)  # under 0.1% of the repository
    assert "of 20.6 GB" in out
    # the staged copies are gone, and never took the disk their size says
    staging = env / "ttsdoctor-cache" / "staging"
    assert not any(staging.iterdir())


def test_a_second_check_and_an_offline_check_read_nothing_new(hub, env, monkeypatch, capsys) -> None:
    folder = str(env / "orpheus-small")
    _orpheus_20gb(folder, rows=320)
    hub.add("canopylabs/orpheus-again", folder)
    first = check_json("hf://canopylabs/orpheus-again")
    sent = hub.bytes_sent("canopylabs/orpheus-again")
    second = check_json("hf://canopylabs/orpheus-again")
    listing = hub.bytes_sent("canopylabs/orpheus-again") - sent
    assert second[1]["findings"] == first[1]["findings"]
    assert second[1]["remote"][0]["bytes_downloaded"] == listing < 10_000  # the file list only: main may move
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    offline = check_json("hf://canopylabs/orpheus-again")
    assert offline[1]["findings"] == first[1]["findings"]
    assert offline[1]["remote"][0]["bytes_downloaded"] == 0
    assert len(hub.requests) == before  # not one request
    code, _out, err = check("hf://canopylabs/never-seen", capsys=capsys)
    assert code == 2 and "HF_HUB_OFFLINE is set" in err and "Traceback" not in err


# --- GGUF and pickles -----------------------------------------------------------------------------------------------


def test_gguf_metadata_is_read_in_growing_ranges(hub, env) -> None:
    from gguf import GGUFWriter

    folder = env / "big-vocab-gguf"
    folder.mkdir()
    import numpy as np

    tokens = [f"<custom_token_{i}>" for i in range(60_000)]  # ~1.5 MB of token list: past the first range
    writer = GGUFWriter(str(folder / "model.gguf"), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_eos_token_id(0)
    writer.add_pad_token_id(0)
    writer.add_tensor("token_embd.weight", np.zeros((59_000, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    hub.add("someone/big-vocab-gguf", str(folder))
    _, local = check_json(str(folder))
    _, remote = check_json("hf://someone/big-vocab-gguf")
    ranges = [r for _m, p, r in hub.requests if p.startswith("/someone/big-vocab-gguf/") and p.endswith("model.gguf")]
    assert len(ranges) >= 2 and ranges[0] == "bytes=0-1048575"
    label = f"hf://someone/big-vocab-gguf@{hub.repos['someone/big-vocab-gguf'].sha}"
    assert _normalised(remote["findings"], label) == _normalised(local["findings"], str(folder))
    assert {f["code"] for f in local["findings"]} >= {"TOK001", "VOC001"}


def test_pickles_are_downloaded_only_when_allowed(hub, env, capsys) -> None:
    source = os.path.join(FIXTURES, "SEC001", "bad", "pickle-runs-shell-command")
    hub.add("someone/pickled", source)
    code, out, err = check("hf://someone/pickled", capsys=capsys)
    assert "SEC001" not in out
    assert "not checked: pytorch_model.bin" in out and "--download-pickles" in out
    code, out, err = check("hf://someone/pickled", "--download-pickles", capsys=capsys)
    assert "SEC001" in out and code == 1
    assert "downloading 1 pickle checkpoint(s)" in err


# --- failures -------------------------------------------------------------------------------------------------------

CLEAN = os.path.join(FIXTURES, "TOK001", "good", "outetts-distinct-pad")


@pytest.mark.parametrize(
    ("options", "path", "message"),
    [
        (None, "hf://nobody/nothing", "repository not found"),
        ({}, "hf://someone/clean@v9", "revision 'v9' not found"),
        ({"gated": True}, "hf://someone/gated", "is gated"),
        ({"private": True}, "hf://someone/private", "repository not found"),
        ({"delay": 3.0}, "hf://someone/slow", "no answer from"),
    ],
)
def test_unreachable_repositories_exit_2_with_a_message(options, path, message, hub, env, monkeypatch, capsys) -> None:
    if options is not None:
        hub.add(path[len("hf://") :].split("@")[0], CLEAN, **options)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    code, out, err = check(path, capsys=capsys)
    assert code == 2
    assert message in err and "Traceback" not in err + out


def test_a_token_opens_private_repositories_and_is_never_printed(hub, env, monkeypatch, capsys) -> None:
    hub.add("someone/secret", os.path.join(FIXTURES, "TOK001", "bad", "outetts-pad-eos-0"), private=True, gated=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, out, err = check("hf://someone/secret", capsys=capsys)
    assert code == 1 and "TOK001" in out
    assert TOKEN not in out + err
    assert f"Bearer {TOKEN}" in hub.authorizations  # sent, to the Hub only
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    shutil.rmtree(env / "ttsdoctor-cache")
    code, out, err = check("hf://someone/secret", capsys=capsys)
    assert code == 2 and "refused the token" in err and "hf_wrong" not in err + out


@pytest.mark.parametrize("how", ["truncate", "hang_up"])
def test_a_truncated_range_answer_is_an_unreadable_file(how, hub, env, capsys) -> None:
    hub.add(f"someone/{how}", os.path.join(FIXTURES, "TOK001", "bad", "outetts-pad-eos-0"), **{how: True})
    code, out, err = check(f"hf://someone/{how}", capsys=capsys)
    assert code == 2
    assert "model.safetensors: ART001" in out and "truncated response" in out
    assert "TOK001" in out  # the other files are checked all the same
    assert "Traceback" not in out + err


def test_a_file_list_cannot_lead_outside_the_staged_folder(hub, env, capsys) -> None:
    hostile = [
        {"rfilename": "../../escaped.json", "size": 10},
        {"rfilename": "/etc/ttsdoctor-escaped.json", "size": 10},
        {"rfilename": "a\\..\\..\\escaped.json", "size": 10},
        {"rfilename": "big.safetensors", "size": "many"},
    ]
    hub.add("someone/hostile-list", CLEAN, extra_siblings=hostile)
    code, out, err = check("hf://someone/hostile-list", capsys=capsys)
    assert code == 0, out + err
    assert out.count("a path that leaves the repository") == 3
    assert not list(env.rglob("escaped.json")) and not os.path.exists("/etc/ttsdoctor-escaped.json")


def test_hub_paths_are_checked_only(hub, env, capsys) -> None:
    for command in (["fix", "hf://someone/clean"], ["tui", "hf://someone/clean"], ["smoke", "hf://someone/clean"]):
        assert cli.main(command, out=io.StringIO()) == 2
        assert "hf download" in capsys.readouterr().err
    assert cli.main(["check", "hf://not a repo"], out=io.StringIO()) == 2
    assert "not a Hub repository id" in capsys.readouterr().err


def test_bare_ids_with_hub_flag(hub, env) -> None:
    hub.add("someone/bare", CLEAN)
    code, out = check("someone/bare", "--hub")[:2]
    assert code == 0 and "hf://someone/bare: commit" in out
    code, out = check("someone/bare")[:2]
    assert code == 2  # without --hub it is a local path, which does not exist


# --- jsonl ----------------------------------------------------------------------------------------------------------


def test_jsonl_has_a_line_per_finding_target_and_repository(hub, env) -> None:
    hub.add("someone/jsonl", os.path.join(FIXTURES, "TOK001", "bad", "outetts-pad-eos-0"))
    code, out = check("hf://someone/jsonl", CLEAN, "--format", "jsonl")[:2]
    lines = [json.loads(line) for line in out.splitlines()]
    findings = [line for line in lines if line["type"] == "finding"]
    targets = [line for line in lines if line["type"] == "target"]
    remote = [line for line in lines if line["type"] == "remote"]
    assert code == 1 and findings and len(remote) == 1
    assert {t["path"] for t in targets} == {CLEAN, f"hf://someone/jsonl@{hub.repos['someone/jsonl'].sha}"}
    by_target = {t["path"]: t for t in targets}
    for target in targets:
        errors = [f for f in findings if f["target"] == target["path"] and f["severity"] == "error"]
        assert target["errors"] == len(errors)
    assert by_target[CLEAN]["errors"] == 0


# --- training configs that name Hub ids ------------------------------------------------------------------------


def test_remote_reads_what_a_training_config_names(hub, env, capsys) -> None:
    source = os.path.join(FIXTURES, "FRZ001", "bad", "freeze-above-vocab")
    repo = env / "amharic-tokenizer"
    repo.mkdir()
    shutil.copy(os.path.join(source, "models", "tokenizer", "Am_tokenizer_merged.json"), repo / "tokenizer.json")
    hub.add("someorg/amharic-tokenizer", str(repo))
    project = env / "project"
    (project / "config").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'amharic'\n")
    with open(os.path.join(source, "config", "training_config.yaml"), encoding="utf-8") as fh:
        text = fh.read().replace('tokenizer: "models/tokenizer"', 'tokenizer: "someorg/amharic-tokenizer"')
    (project / "config" / "training_config.yaml").write_text(text)
    before = len(hub.requests)
    code, out, err = check(str(project), capsys=capsys)
    assert "the tokenizer" not in out and len(hub.requests) == before  # no network unless asked
    code, out, err = check(str(project), "--remote", capsys=capsys)
    label = f"hf://someorg/amharic-tokenizer@{hub.repos['someorg/amharic-tokenizer'].sha}"
    assert code == 1, out + err
    assert f"FRZ001 freeze_until_index 3000 is above the vocabulary size (the tokenizer {label}" in out
    assert f"hf://someorg/amharic-tokenizer: commit {hub.repos['someorg/amharic-tokenizer'].sha}" in out
    # a Hub id that does not exist: said, and the rest of the check goes on
    (project / "config" / "training_config.yaml").write_text(text.replace("someorg/", "nobody/"))
    code, out, err = check(str(project), "--remote", capsys=capsys)
    assert "hf://nobody/amharic-tokenizer: repository not found" in err and "Traceback" not in err


def test_empty_weights_on_the_hub_read_as_on_disk(hub, env, capsys) -> None:
    """A 0-byte weight file is ART001 beside a config.json (the model cannot load) and ART004 elsewhere, whether
    the folder is on disk or on the Hub."""
    for name in ("ART001/bad/empty-weights-beside-config", "ART004/bad/empty-checkpoint-placeholder"):
        rule = name.split("/")[0]
        hub.add(f"someone/{rule.lower()}", os.path.join(FIXTURES, *name.split("/")))
        code, out, _ = check(f"hf://someone/{rule.lower()}", capsys=capsys)
        local_code, local_out, _ = check(os.path.join(FIXTURES, *name.split("/")), capsys=capsys)
        assert f": {rule}" in local_out
        assert f": {rule}" in out and "is empty (0 bytes)" in out, out
        assert code == local_code == (2 if rule == "ART001" else 1)
