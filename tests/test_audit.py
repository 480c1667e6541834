"""python -m ttsdoctor.audit: checks of a list of Hub ids and paths on a local Dask cluster of two workers."""

from __future__ import annotations

import json
import os

from conftest import FIXTURES
from test_hub import env, hub  # noqa: F401  (the fake Hub and its environment)

from ttsdoctor import audit

BAD = os.path.join(FIXTURES, "TOK001", "bad", "outetts-pad-eos-0")
GOOD = os.path.join(FIXTURES, "TOK001", "good", "outetts-distinct-pad")


def test_audit_on_a_two_worker_cluster_equals_one_check_per_target(hub, env) -> None:  # noqa: F811
    repos = {
        "audit/bad": BAD,
        "audit/good": GOOD,
        "audit/gguf": os.path.join(FIXTURES, "SRV005", "bad", "orpheus-gguf-beside-another-tokenizer"),
        "audit/vocab": os.path.join(FIXTURES, "VOC001", "bad", "tokenizer-above-rows"),
    }
    for repo_id, folder in repos.items():
        hub.add(repo_id, folder)
    hub.add("audit/bare", GOOD)
    targets = [f"hf://{r}" for r in repos] + ["audit/bare", GOOD, "hf://audit/missing"]
    listing = env / "ids.txt"
    listing.write_text("# what to audit\n" + "\n".join(targets) + "\n\n" + targets[0] + "\n")
    output = env / "audit.jsonl"
    assert audit.main([str(listing), "--workers", "2", "-o", str(output)]) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    runs = {line["target"]: line for line in lines if line["type"] == "run"}
    assert sorted(runs) == sorted(dict.fromkeys(targets))  # each once, the duplicate line dropped
    for target in dict.fromkeys(targets):
        alone = [json.loads(line) for line in audit.check_one(target)]
        assert alone[-1]["exit"] == runs[target]["exit"], target
        found = [line for line in alone if line["type"] == "finding"]
        on_cluster = [line for line in lines if line["type"] == "finding" and line.get("target") in _targets(alone)]
        assert sorted(json.dumps(f, sort_keys=True) for f in found) == sorted(
            json.dumps(f, sort_keys=True) for f in on_cluster
        ), target
    assert runs["hf://audit/bad"]["exit"] == 1 and runs["hf://audit/good"]["exit"] == 0
    assert runs["audit/bare"]["exit"] == 0  # a bare ORG/NAME that is no local path is a Hub id
    assert any(line["type"] == "remote" and line["repository"] == "hf://audit/bare" for line in lines)
    assert runs["hf://audit/missing"]["exit"] == 2 and "repository not found" in runs["hf://audit/missing"]["stderr"]
    remote = [line for line in lines if line["type"] == "remote"]
    assert {r["repository"] for r in remote} >= {f"hf://{r}" for r in repos}


def _targets(lines: list[dict]) -> set[str]:
    return {line["path"] for line in lines if line["type"] == "target"}
