"""Property-based tests of the loaders and of the JSON / YAML editors (hypothesis)."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttsdoctor.artifacts.errors import ArtifactError
from ttsdoctor.artifacts.jsonfile import escape_pointer_part, locate, parse_json_text, position_in, positions_in
from ttsdoctor.artifacts.weights import read_safetensors_header
from ttsdoctor.edits import remove_json_key, set_json_value, set_yaml_value

# the same examples on every run, so CI's verdict does not depend on the draw (tests/test_fuzz.py: how to hunt)
SETTINGS = settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
keys = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=20,
)
documents = st.dictionaries(keys, json_values, min_size=1, max_size=6)


def _pointers(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            pointer = f"{prefix}/{escape_pointer_part(key)}"
            out.append((pointer, value))
            out += _pointers(value, pointer)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _pointers(value, f"{prefix}/{index}")
    return out


def _get(node: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _dump(doc: dict, indent: int | None) -> str:
    return json.dumps(doc, indent=indent, ensure_ascii=False) + "\n"


@SETTINGS
@given(documents, st.sampled_from([None, 2, 4]), st.data())
def test_set_json_value_changes_only_that_value(doc, indent, data) -> None:
    text = _dump(doc, indent)
    pointers = [p for p, _ in _pointers(doc) if p.count("/") >= 1]
    pointer = data.draw(st.sampled_from(pointers))
    value = data.draw(scalars)
    edited = set_json_value(text, pointer, value)
    result = json.loads(edited)
    assert _get(result, pointer) == value or (value != value)
    # everything outside the value's span is byte-identical
    span = locate(text, pointer)
    assert span is not None
    assert edited[: span.value_start] == text[: span.value_start]
    assert edited.endswith(text[span.value_end :])
    assert edited.endswith("\n")


@SETTINGS
@given(documents, st.sampled_from([None, 2, 4]), st.data())
def test_remove_and_add_json_keys_round_trip(doc, indent, data) -> None:
    text = _dump(doc, indent)
    key = data.draw(st.sampled_from(sorted(doc)))
    pointer = "/" + escape_pointer_part(key)
    removed = json.loads(remove_json_key(text, pointer))
    expected = dict(doc)
    del expected[key]
    assert removed == expected
    assert list(removed) == list(expected)  # order kept
    added = json.loads(set_json_value(remove_json_key(text, pointer), pointer, doc[key]))
    assert added == doc


identifiers = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)
yaml_scalars = st.one_of(st.integers(-(10**6), 10**6), st.booleans(), st.from_regex(r"[a-z]{1,8}", fullmatch=True))


@SETTINGS
@given(
    st.dictionaries(
        identifiers, st.dictionaries(identifiers, yaml_scalars, min_size=1, max_size=4), min_size=1, max_size=4
    ),
    yaml_scalars,
    st.data(),
)
def test_yaml_edit_keeps_comments_and_changes_one_value(doc, value, data) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    lines = buffer.getvalue().splitlines(keepends=True)
    text = "# project config\n" + "".join(
        line.rstrip("\n") + f"  # note {i}\n" if ":" in line and not line.rstrip().endswith(":") else line
        for i, line in enumerate(lines)
    )
    section = data.draw(st.sampled_from(sorted(doc)))
    key = data.draw(st.sampled_from(sorted(doc[section])))
    edited = set_yaml_value(text, f"/{section}/{key}", value)
    reloaded = YAML(typ="safe").load(edited)
    expected = {s: dict(v) for s, v in doc.items()}
    expected[section][key] = value
    assert reloaded == expected
    assert [line for line in edited.splitlines() if "#" in line and "note" not in line] == ["# project config"]
    assert edited.count("# note") == text.count("# note")


@SETTINGS
@given(st.binary(max_size=300))
def test_json_loader_raises_only_artifact_errors(blob) -> None:
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_json_text("config.json", text)
    except ArtifactError as exc:
        assert exc.path == "config.json" and exc.problem


@SETTINGS
@given(st.binary(max_size=200), st.integers(0, 2**64 - 1), st.binary(max_size=64))
def test_safetensors_reader_raises_only_artifact_errors(tmp_path_factory, header, declared, data) -> None:
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    path.write_bytes(struct.pack("<Q", declared) + header + data)
    try:
        info = read_safetensors_header(str(path))
    except ArtifactError as exc:
        assert exc.path == str(path)
        return
    size = path.stat().st_size
    for tensor in info.tensors.values():
        assert tensor.data_start is not None and tensor.data_end is not None and tensor.data_end <= size


def _every_pointer(node: Any, prefix: str = "") -> list[str]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    out = []
    for key, value in items:
        pointer = f"{prefix}/{escape_pointer_part(key)}"
        out += [pointer, *_every_pointer(value, pointer)]
    return out


@SETTINGS
@given(documents, st.sampled_from([None, 2, 4]), st.booleans())
def test_positions_in_one_walk_are_the_positions_one_by_one(doc, indent, cut) -> None:
    text = _dump(doc, indent)
    if cut:
        text = text[: len(text) * 2 // 3]  # a truncated file: what can be found is found, the rest is None
    pointers = [*_every_pointer(doc), "/absent", "/absent/deeper"]
    assert positions_in(text, pointers) == {pointer: position_in(text, pointer) for pointer in pointers}
