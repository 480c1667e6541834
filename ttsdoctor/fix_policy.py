"""Fix policy: which tensors and checkpoint files `fix` may rewrite, and why not when it may not.

Rules consult it when they build a fix (a resize they cannot promise becomes a display-only fix with the
reason); edits.py consults it again right before rewriting a pickle checkpoint.
"""

from __future__ import annotations

import os

from ttsdoctor.artifacts.tensors import TensorInfo, WeightFile, Weights

RESIZABLE_DTYPES = ("F32", "F16", "BF16", "F64")
PADDING_MULTIPLES = (128, 64)  # an embedding grown by fix is padded to the first multiple its rows already keep


def resizable(tensor: TensorInfo, weights: Weights | None) -> bool:
    """Whether `fix` can grow this tensor's first dimension."""
    return resize_refusal(tensor, weights) is None


def resize_refusal(tensor: TensorInfo, weights: Weights | None) -> str | None:
    """Why `fix` cannot grow this tensor's first dimension, or None when it can.

    safetensors files are rewritten from their header; a pickle checkpoint only when it is a torch zip whose
    pickle names nothing but tensor-rebuilding globals (what `torch.load(weights_only=True)` accepts).
    """
    name = os.path.basename(tensor.path)
    if len(tensor.shape) not in (1, 2) or tensor.dtype not in RESIZABLE_DTYPES:
        shape = f"{len(tensor.shape)}-D {tensor.dtype}"
        return f"{tensor.name} in {name} is {shape}: only 1-D and 2-D float tensors are resized"
    if weights is None:
        return f"{name} was not read"
    if tensor.path.endswith(".safetensors"):
        return None
    source = next((wf for wf in weights.files if wf.path == tensor.path), None)
    if source is None:
        return f"{name} was not read"
    if source.format == "gguf":
        return f"{name} is a GGUF file: fix the checkpoint it was converted from, then convert it again"
    refusal = pickle_rewrite_refusal(source)
    return f"{name} {refusal}" if refusal is not None else None


def pickle_rewrite_refusal(source: WeightFile) -> str | None:
    """Why `fix` will not rewrite this pickle checkpoint, or None when it may."""
    if source.format != "torch-zip":
        return "is a legacy pickle checkpoint: re-save it with torch.save to resize it"
    if not source.pickle_globals:
        return "holds no tensors"
    unsafe = source.unsafe_globals
    if unsafe:
        return (
            f"pickles more than tensors ({', '.join(f'{m}.{n}' for m, n in sorted(unsafe)[:3])}), and rewriting it "
            "means loading it: re-save it as a state dict or safetensors, then run fix again"
        )
    if source.unchecked or source.damaged or source.ambiguities:
        return "was not read completely (ART005, SEC005): it is not rewritten"
    return None
