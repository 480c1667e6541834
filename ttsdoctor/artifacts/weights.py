"""Weights, read from headers only: tensor names, dtypes, shapes and byte ranges.

- safetensors: the 8-byte length, the JSON header, every offset validated against the file size;
- sharded checkpoints through `*.safetensors.index.json`;
- pickle checkpoints (.pt/.pth/.bin/.ckpt) through `pickles.py`, which imports and calls nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import struct

from ttsdoctor.artifacts.errors import AbsentShards, ArtifactError, refuse_missing_content, regular_file_size
from ttsdoctor.artifacts.jsonfile import load_json
from ttsdoctor.artifacts.pickles import looks_like_checkpoint, read_pickle_checkpoint
from ttsdoctor.artifacts.tensors import DTYPE_SIZES, TensorInfo, WeightFile, Weights
from ttsdoctor.limits import limit, over

# --- safetensors ---------------------------------------------------------------------------------


def read_safetensors_header(path: str) -> WeightFile:
    size = regular_file_size(path)
    refuse_missing_content(path, size)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ArtifactError(
                    path, f"truncated safetensors file: {size} bytes, not even the 8-byte header length"
                )
            (n,) = struct.unpack("<Q", head)
            if n > limit("safetensors_header_bytes"):
                raise ArtifactError(path, f"safetensors header length {over('safetensors_header_bytes', n)}")
            if 8 + n > size:
                raise ArtifactError(
                    path, f"safetensors header length {n} points past the end of the file ({size} bytes)"
                )
            raw = fh.read(n)
    except PermissionError:
        raise ArtifactError(path, "permission denied") from None
    except FileNotFoundError:
        raise ArtifactError(path, "file not found") from None
    except IsADirectoryError:
        raise ArtifactError(path, "is a directory where a file is expected") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror or exc}") from None
    listed = raw.count(b'"data_offsets"')  # one per tensor (an escaped quote inside a name cannot match)
    if listed > limit("safetensors_tensors"):  # refused before a slow parse of millions of entries
        raise ArtifactError(path, f"safetensors header lists {over('safetensors_tensors', listed)}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(path, f"safetensors header is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ArtifactError(path, "safetensors header is not a JSON object")
    data_size = size - 8 - n
    base = 8 + n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ArtifactError(path, "safetensors __metadata__ is not an object")
    if len(header) > limit("safetensors_tensors"):
        raise ArtifactError(path, f"safetensors header lists {over('safetensors_tensors', len(header))}")
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():  # the hot loop of a large header: exact type checks, no generators
        if type(entry) is not dict:
            raise ArtifactError(path, f"tensor {name!r}: header entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if type(dtype) is not str or dtype not in DTYPE_SIZES:
            raise ArtifactError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
        numel = 1
        if type(shape) is not list:
            shape = None
        else:
            for d in shape:
                if type(d) is not int or d < 0:
                    shape = None
                    break
                numel *= d
        if shape is None:
            raise ArtifactError(
                path, f"tensor {name!r}: shape {entry.get('shape')!r} is not a list of non-negative integers"
            )
        if type(offsets) is not list or len(offsets) != 2 or type(offsets[0]) is not int or type(offsets[1]) is not int:
            raise ArtifactError(path, f"tensor {name!r}: data_offsets {offsets!r} is not a pair of integers")
        begin, end = offsets
        expected = numel * DTYPE_SIZES[dtype]
        if not 0 <= begin <= end:
            raise ArtifactError(path, f"tensor {name!r}: data_offsets {offsets} are out of order")
        if end > data_size:
            raise ArtifactError(
                path,
                f"tensor {name!r}: data_offsets end {end} is past the end of the data "
                f"({data_size} bytes): the file is truncated",
            )
        if end - begin != expected:
            raise ArtifactError(
                path, f"tensor {name!r}: {end - begin} bytes for shape {shape} {dtype}, expected {expected}"
            )
        spans.append((begin, end, name))
        tensors[name] = TensorInfo(name, dtype, tuple(shape), path, base + begin, base + end)
    spans.sort()
    for (_b1, e1, n1), (b2, _e2, n2) in itertools.pairwise(spans):
        if b2 < e1:
            raise ArtifactError(path, f"tensors {n1!r} and {n2!r} overlap in the data section")
    return WeightFile(
        path=path,
        format="safetensors",
        tensors=tensors,
        metadata={k: v for k, v in metadata.items() if isinstance(v, str)},
    )


def load_sharded_safetensors(index_path: str) -> Weights:
    weights = Weights(index_path=index_path)
    doc = load_json(index_path)
    weight_map = doc.data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise ArtifactError(index_path, "has no weight_map object")
    directory = os.path.dirname(index_path)
    shards: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise ArtifactError(index_path, f"weight_map[{tensor!r}] is not a file name")
        shards.setdefault(shard, []).append(tensor)
    inside = {s for s in shards if not os.path.isabs(s) and ".." not in s.replace("\\", "/").split("/")}
    if inside and not any(os.path.lexists(os.path.join(directory, s)) for s in inside):
        # no shard at all: weights not downloaded (ART004), where one missing among present ones is a damaged save
        weights.errors.append(AbsentShards(index_path, sorted(inside)))
        shards = {s: names for s, names in shards.items() if s not in inside}
    for shard, names in shards.items():
        shard_path = os.path.join(directory, shard)
        if shard not in inside:
            weights.errors.append(ArtifactError(index_path, f"shard name {shard!r} leaves the model directory"))
            continue
        if not os.path.lexists(shard_path):
            weights.errors.append(ArtifactError(index_path, f"names shard {shard!r} which does not exist"))
            continue
        try:
            wf = read_safetensors_header(shard_path)
        except ArtifactError as exc:
            weights.errors.append(exc)
            continue
        missing = [n for n in names if n not in wf.tensors]
        if missing:
            weights.errors.append(
                ArtifactError(
                    index_path, f"{len(missing)} tensors mapped to {shard!r} are not in it, for example {missing[0]!r}"
                )
            )
        weights.files.append(wf)
    return weights


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def load_weight_file(path: str) -> WeightFile:
    if path.endswith(".safetensors"):
        return read_safetensors_header(path)

    return read_pickle_checkpoint(path)


PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _is_weight_name(directory: str, name: str) -> bool:
    if not name.endswith(WEIGHT_SUFFIXES):
        return False
    if not name.endswith(".bin"):
        return True

    return looks_like_checkpoint(os.path.join(directory, name))


def load_weights_in_dir(directory: str, names: list[str], header_only: frozenset[str] = frozenset()) -> Weights | None:
    """The weights of a model directory: the sharded index if any, else every weight file (safetensors first,
    as transformers prefers them). Every other pickle file beside them is read too, for the security rules.
    Files in `header_only` hold their header and no data (a Hub repository read by range requests)."""
    weights = _weights_in_dir(directory, names)
    if weights is not None and header_only:
        weights.files = [wf.without_data() if wf.path in header_only else wf for wf in weights.files]
    return weights


def _weights_in_dir(directory: str, names: list[str]) -> Weights | None:
    files = sorted(n for n in names if _is_weight_name(directory, n))
    index = [n for n in names if n.endswith(".safetensors.index.json")]
    if index:
        path = os.path.join(directory, sorted(index)[0])
        try:
            weights = load_sharded_safetensors(path)
        except ArtifactError as exc:
            weights = Weights(index_path=path, errors=[exc])
        chosen = {os.path.basename(wf.path) for wf in weights.files}
    else:
        safes = [n for n in files if n.endswith(".safetensors")]
        chosen_names = safes or [n for n in files if not n.startswith("training_args")]
        if not files:
            return None
        weights = Weights()
        for name in chosen_names:
            try:
                weights.files.append(load_weight_file(os.path.join(directory, name)))
            except ArtifactError as exc:
                weights.errors.append(exc)
        chosen = set(chosen_names)
    for name in files:
        if name in chosen or not name.endswith(PICKLE_SUFFIXES):
            continue
        try:
            weights.extras.append(load_weight_file(os.path.join(directory, name)))
        except ArtifactError as exc:
            weights.errors.append(exc)
    return weights
