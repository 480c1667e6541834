"""Row statistics of an embedding read straight from a safetensors file, without torch.

Only the rows asked for (at most MAX_NEW_ROWS new rows, evenly spaced) and a sample of trained rows
are read, through a memory map, so a 150k x 4096 embedding costs a few megabytes of I/O.
bf16 is widened to float32 by shifting the 16 bits into the high half.
"""

from __future__ import annotations

import msgspec

from ttsdoctor.artifacts.tensors import TensorInfo

MAX_NEW_ROWS = 2048
REFERENCE_ROWS = 512
NUMPY_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


class RowReport(msgspec.Struct, frozen=True):
    checked: int
    zero: int
    duplicates: int
    outliers: int
    median_norm: float
    examples: list[int]


def _spaced(ids: list[int], limit: int) -> list[int]:
    if len(ids) <= limit:
        return ids
    step = len(ids) / limit
    return [ids[int(i * step)] for i in range(limit)]


def read_raw_rows(tensor: TensorInfo, ids: list[int]):  # -> numpy.ndarray in the file's dtype
    import numpy as np

    if tensor.data_start is None or len(tensor.shape) != 2:
        raise ValueError("row reads need a 2-D safetensors tensor")
    rows, width = tensor.shape
    matrix = np.memmap(
        tensor.path, dtype=NUMPY_DTYPES[tensor.dtype], mode="r", offset=tensor.data_start, shape=(rows, width)
    )
    picked = np.asarray(matrix[np.asarray(ids, dtype=np.int64)])
    del matrix
    return picked


def widen(raw, dtype: str):  # -> float32 numpy array
    import numpy as np

    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def read_rows(tensor: TensorInfo, ids: list[int]):  # -> numpy.ndarray (float32)
    return widen(read_raw_rows(tensor, ids), tensor.dtype)


def _all_zero(tensor: TensorInfo, ids: list[int]) -> bool:
    """Whether these rows hold only zero bytes (weights not written yet, or a sparse file): no numpy needed."""
    assert tensor.data_start is not None and tensor.data_end is not None
    row_bytes = (tensor.data_end - tensor.data_start) // max(tensor.shape[0], 1)
    with open(tensor.path, "rb") as fh:
        for i in ids:
            fh.seek(tensor.data_start + i * row_bytes)
            chunk = fh.read(row_bytes)
            if chunk.count(0) != len(chunk):
                return False
    return True


def _median_norm(tensor: TensorInfo, reference_ids: list[int]) -> float | None:
    """The median norm of these (trained) rows, leaving out zero and non-finite ones; None when none is left."""
    import numpy as np

    norms = np.linalg.norm(read_rows(tensor, reference_ids), axis=1)
    norms = norms[np.isfinite(norms) & (norms > 0)]
    return float(np.median(norms)) if norms.size else None


def row_report(tensor: TensorInfo, new_ids: list[int], first_new: int) -> RowReport | None:
    if tensor.dtype not in NUMPY_DTYPES or tensor.data_start is None or not new_ids or first_new <= 0:
        return None
    new_ids = _spaced(new_ids, MAX_NEW_ROWS)
    reference_ids = _spaced(list(range(first_new)), REFERENCE_ROWS)
    if _all_zero(tensor, reference_ids):
        return None  # no trained rows to compare with
    import numpy as np

    with np.errstate(all="ignore"):  # NaN/inf rows are findings, not warnings on stderr
        median = _median_norm(tensor, reference_ids)
        if median is None:
            return None
        raw = read_raw_rows(tensor, new_ids)
        zero = ~np.any(raw.view(np.uint8).reshape(len(new_ids), -1) != 0, axis=1)
        norms = np.linalg.norm(widen(raw, tensor.dtype), axis=1)
        # identical rows: equal bytes; hashing a row's bytes avoids sorting the whole matrix
        seen: dict[bytes, int] = {}
        keys = [row.tobytes() for row in raw]
        for key in keys:
            seen[key] = seen.get(key, 0) + 1
        duplicate = np.array([seen[key] > 1 for key in keys]) & ~zero
        outlier = ~zero & ((norms < 0.2 * median) | (norms > 5 * median) | ~np.isfinite(norms))
    bad = zero | duplicate | outlier
    examples = [new_ids[i] for i in np.flatnonzero(bad)[:5]]
    return RowReport(len(new_ids), int(zero.sum()), int(duplicate.sum()), int(outlier.sum()), median, examples)


def row_spread(tensor: TensorInfo, ids: list[int], reference_end: int) -> tuple[float, int] | None:
    """(largest distance of these rows from their mean / median norm of rows [0, reference_end), rows read).

    Rows resized in by transformers (mean of the old rows plus noise of 1e-9 of their covariance) and never
    trained are within 1e-4 of each other; trained or randomly initialised rows are about 1 apart.
    """
    if tensor.dtype not in NUMPY_DTYPES or tensor.data_start is None or len(ids) < 2 or reference_end <= 0:
        return None
    import numpy as np

    ids = _spaced(ids, MAX_NEW_ROWS)
    with np.errstate(all="ignore"):
        median = _median_norm(tensor, _spaced(list(range(reference_end)), REFERENCE_ROWS))
        rows = read_rows(tensor, ids)
        if median is None or not np.all(np.isfinite(rows)):
            return None
        distance = np.linalg.norm(rows - rows.mean(axis=0), axis=1).max()
    return float(distance / median), len(ids)


def all_zero(tensor: TensorInfo, chunk_bytes: int = 1 << 22) -> bool | None:
    """Whether every value of a float tensor is zero (+0 or -0), read in chunks; None when it cannot be read."""
    if tensor.data_start is None or tensor.data_end is None or tensor.dtype not in NUMPY_DTYPES:
        return None
    import numpy as np

    width = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}[tensor.dtype]
    sign_free = np.dtype(f"<u{width}").type((1 << (8 * width - 1)) - 1)
    step = chunk_bytes - chunk_bytes % width
    with open(tensor.path, "rb") as fh:
        fh.seek(tensor.data_start)
        left = tensor.data_end - tensor.data_start
        while left > 0:
            chunk = fh.read(min(step, left))
            if not chunk or len(chunk) % width:
                return None  # truncated: the weights loader reports it
            left -= len(chunk)
            if np.any(np.frombuffer(chunk, dtype=f"<u{width}") & sign_free):
                return False
    return True
