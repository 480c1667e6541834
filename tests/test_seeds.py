"""The four reports the project was created from (../shared/seeds/), as findings with values written by hand.

These expectations are not snapshots written by the code under test: each value below was read off the
seed report and the fixture file (the line and column of the key in the file, the ids the report quotes).
"""

from __future__ import annotations

import os

import pytest
from conftest import FIXTURES

from ttsdoctor import engine
from ttsdoctor.discover import discover
from ttsdoctor.registry import ALL_RULES

# (fixture, rule) -> [(file, pointer, line, column, evidence subset, message fragments)]
SEEDS = {
    # 000 OuteTTS: pad_token_id 0 == eos_token_id 0 in both configs ("Set pad_token_id and eos_token_id to 0")
    ("TOK001/bad/outetts-pad-eos-0", "TOK001"): [
        (
            "config.json",
            "/pad_token_id",
            25,
            3,
            {},
            ("pad_token_id 0 ('!') equals eos_token_id", "never learns to stop"),
        ),
        ("generation_config.json", "/pad_token_id", 2, 3, {}, ("pad_token_id 0 ('!') equals eos_token_id",)),
    ],
    # 000 OuteTTS: generation parameters passed as a dict -> 'dict' object has no attribute 'to_dict'
    ("GEN001/bad/outetts-additional-model-config", "GEN001"): [
        ("tts.py", None, 9, 30, {}, ("'dict' object has no attribute 'to_dict'",)),
    ],
    # 003 Chatterbox Amharic: model built with n_vocab 887, merged tokenizer has 2535 ids (CUDA device-side assert)
    ("VOC001/bad/chatterbox-amharic-887", "VOC001"): [
        ("config/training_config.yaml", "/model/n_vocab", 8, 3, {"tokenizer_ids": 2535, "size": 887}, ("2535 ids",)),
    ],
    # 003 Chatterbox Amharic: freeze_until_index 3000 above the 2535-id vocabulary (2454 was right)
    ("FRZ001/bad/freeze-above-vocab", "FRZ001"): [
        ("config/training_config.yaml", "/model/freeze_until_index", 10, 3, {"index": 3000, "vocab": 2535}, ()),
    ],
    # 001 Chatterbox token-sequence report: output_attentions=True forced in the streaming inference loop
    ("ATT001/bad/chatterbox-inference-loop", "ATT001"): [
        ("t3_stream.py", None, 6, 71, {"in_loop": False}, ("output_attentions=True",)),
        ("t3_stream.py", None, 13, 13, {"in_loop": True}, ("inside a loop",)),
    ],
    # 002 vall-e model v2 notes: 12 response levels against EnCodec's 8 codebooks
    ("COD001/bad/valle-resp-levels-above-encodec", "COD001"): [
        ("config.yaml", "/models/0/resp_levels", 5, 3, {"resp_levels": 12, "codebooks": 8}, ("8 codebooks",)),
    ],
}


@pytest.mark.parametrize(("case", "rule"), list(SEEDS), ids=[f"{r}:{c}" for c, r in SEEDS])
def test_seed_case_findings_carry_the_values_of_the_report(case: str, rule: str) -> None:
    folder = os.path.join(FIXTURES, case)
    found = [f for f in engine.run(ALL_RULES, discover([folder])).findings if f.rule_id == rule]
    assert len(found) == len(SEEDS[(case, rule)]), [f.message for f in found]
    for finding, (path, pointer, line, column, evidence, fragments) in zip(found, SEEDS[(case, rule)]):
        assert os.path.relpath(finding.location.path, folder) == path
        assert (finding.location.pointer, finding.location.line, finding.location.column) == (pointer, line, column)
        assert {k: finding.evidence.get(k) for k in evidence} == evidence
        for fragment in fragments:
            assert fragment in finding.message, finding.message
        assert finding.severity.value in ("error", "warning")
