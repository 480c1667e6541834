"""VOC: tokenizer ids, declared vocabulary sizes and embedding / head rows, across model dirs and
training configs (with the tokenizer and checkpoints they name)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import singledispatch
from typing import Any, ClassVar

import msgspec

from ttsdoctor.artifacts.embeddings import head_bias, text_embedding, text_head
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.tensors import TensorInfo, Weights
from ttsdoctor.artifacts.training_config import Entry, TrainingConfig
from ttsdoctor.finding import Applicability, Finding, Fix, ResizeTensor, SetJsonValue, SetYamlValue, Severity
from ttsdoctor.fix_policy import PADDING_MULTIPLES, resize_refusal
from ttsdoctor.limits import limit, over
from ttsdoctor.rule import ModelOrConfigRule, Rule

DECLARED_KEYS = ("n_vocab", "vocab_size", "text_vocab_size", "num_text_tokens", "text_tokens_dict_size", "n_text_vocab")
BASE_KEYS = ("original_vocab_size", "base_vocab_size", "orig_vocab_size", "pretrained_vocab_size")
OUT_OF_RANGE = "IndexError on CPU, device-side assert on CUDA"


class Size(msgspec.Struct, frozen=True):
    value: int
    what: str  # "n_vocab in config/train.yaml", "the embedding text_emb.weight in x.pt"
    kind: str  # "tokenizer" | "declared" | "embedding" | "head"
    path: str
    pointer: str | None = None
    line: int | None = None
    column: int | None = None
    tensor: TensorInfo | None = None
    entry: Entry | None = None


class VocabView(msgspec.Struct, frozen=True):
    tokenizer: Size | None
    declared: tuple[Size, ...]
    rows: tuple[Size, ...]  # embeddings and heads, in weight-file order
    # A training config builds its model (declared sizes follow the tokenizer); a model folder is built (its
    # config follows the weights, which a fix may grow: `weights` and `config_path` are set for it).
    builds_model: bool
    weights: Weights | None = None
    config_path: str | None = None
    edit_format: str = "json"  # how a declared size is edited: "json" | "yaml"

    @property
    def embeddings(self) -> tuple[Size, ...]:
        return tuple(s for s in self.rows if s.kind == "embedding")


def _tensor_sizes(weights: Weights | None) -> list[Size]:
    if weights is None:
        return []
    out = []
    # Group by file: a sharded checkpoint is one model, a list of .pt files in a config is several.
    groups = [weights.tensors] if weights.index_path else [wf.tensors for wf in weights.files]
    for tensors in groups:
        head = text_head(tensors)
        for kind, tensor in (
            ("embedding", text_embedding(tensors)),
            ("head", head),
            ("head", head_bias(tensors, head)),
        ):
            if tensor is not None and tensor.rows is not None:
                shape = list(tensor.shape)
                label = "head bias" if len(shape) == 1 else kind
                what = f"the {label} {tensor.name} {shape} in {tensor.path}"
                out.append(Size(tensor.rows, what, kind, tensor.path, "/" + tensor.name, tensor=tensor))
    return out


def vocab_view(target: ModelDir | TrainingConfig) -> VocabView:
    """The sizes to compare, computed once per target (six rules ask)."""
    cached = target.cache.get("vocab_view")
    if cached is None:
        cached = target.cache["vocab_view"] = _vocab_view(target)
    return cached


@singledispatch
def _vocab_view(target: ModelDir | TrainingConfig) -> VocabView:
    raise TypeError(type(target).__name__)


@_vocab_view.register
def _model_vocab_view(target: ModelDir) -> VocabView:
    tok = None
    if target.tokenizer is not None and target.tokenizer.file is not None:
        f = target.tokenizer.file
        tok = Size(f.id_count, f"the tokenizer {f.path}", "tokenizer", f.path)
    declared = []
    if target.config is not None and target.shares_tokenizer_space:
        args = target.config.data.get("model_args")
        xtts = args.get("gpt_number_text_tokens") if isinstance(args, dict) else None
        candidates = (
            (
                target.text_vocab_key,
                f"/{target.text_vocab_key}",
                target.config_scopes[0].get_int(target.text_vocab_key),
            ),
            (
                "gpt_number_text_tokens",
                "/model_args/gpt_number_text_tokens",
                xtts if isinstance(xtts, int) and not isinstance(xtts, bool) else None,
            ),
        )
        for key, pointer, vocab in candidates:
            if vocab is not None:
                line, column = target.config.position(pointer)
                what = f"{key} in {target.config.path}"
                declared.append(Size(vocab, what, "declared", target.config.path, pointer, line, column))
    by_design = target.family is not None and target.family.pad_equals_eos_by_design
    rows = () if by_design else tuple(_tensor_sizes(target.weights))
    config_path = target.config.path if target.config is not None else None
    return VocabView(tok, tuple(declared), rows, builds_model=False, weights=target.weights, config_path=config_path)


@_vocab_view.register
def _config_vocab_view(target: TrainingConfig) -> VocabView:
    tok = None
    named = target.tokenizer
    if named is not None and named.tokenizer is not None and named.tokenizer.file is not None:
        f = named.tokenizer.file
        tok = Size(f.id_count, f"the tokenizer {f.path} (named by {named.entry.key})", "tokenizer", f.path)
    declared = []
    entry = target.first_int(*DECLARED_KEYS)
    if entry is not None:
        declared.append(
            Size(
                entry.value,
                f"{entry.key} in {target.path}",
                "declared",
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                entry=entry,
            )
        )
    rows: list[Size] = []
    for weights_file in target.named("weights"):
        rows += _tensor_sizes(weights_file.weights)
    return VocabView(tok, tuple(declared), tuple(rows), builds_model=True, edit_format=target.format)


def padded_size(ids: int, multiple: int) -> int:
    return -(-ids // multiple) * multiple


def is_normal_padding(rows: int, ids: int, multiple: int = 64, max_surplus: int = 1024) -> bool:
    """Rows rounded up to a multiple (and not absurdly far above the tokenizer) are normal padding."""
    surplus = rows - ids
    if surplus < multiple:
        return True
    return rows % multiple == 0 and surplus <= max(max_surplus, ids // 50)


def _set_value_fix(view: VocabView, size: Size, value: int, title: str) -> Fix | None:
    if size.pointer is None:
        return None
    edit: Any = (SetYamlValue if view.edit_format == "yaml" else SetJsonValue)(size.path, size.pointer, value)
    return Fix(title, Applicability.SAFE, (edit,))


def _resize_fix(view: VocabView, ids: int) -> Fix | None:
    """Grow embedding and head (and a head bias) to the tokenizer, keeping their padding multiple.

    The declared sizes in config.json (vocab_size, XTTS gpt_number_text_tokens) follow the new row count.
    """
    if view.builds_model:  # a training config's checkpoints are grown by its own training code
        return None
    refusals = [resize_refusal(s.tensor, view.weights) for s in view.rows if s.tensor is not None]
    refusal = next((r for r in refusals if r is not None), None)
    if refusal is not None:
        return Fix(f"Grow the embedding and head by hand: {refusal}", Applicability.DISPLAY_ONLY, ())
    tensors = [s.tensor for s in view.rows if s.tensor is not None]
    if not tensors or len(tensors) != len(view.rows):
        return None
    current = max(t.rows or 0 for t in tensors)
    multiple = next((m for m in PADDING_MULTIPLES if current % m == 0), 1)
    rows = padded_size(ids, multiple)
    if rows > limit("resize_rows"):  # a hostile or broken id (4e9) must not plan a 64 GB rewrite
        return Fix(
            f"Grow the embedding by hand, if at all: {over('resize_rows', rows)}; the largest real vocabularies "
            "have ~262k ids: check the tokenizer's highest id first",
            Applicability.DISPLAY_ONLY,
            (),
        )
    edits: list[Any] = [ResizeTensor(t.path, t.name, rows, min(t.rows or 0, ids)) for t in tensors]
    keys = []
    for size in view.declared:
        if size.pointer is not None and size.path == view.config_path:
            edits.append(SetJsonValue(size.path, size.pointer, rows))
            keys.append(size.pointer.rsplit("/", 1)[-1])
    what = "embedding and head" + (" (weight and bias)" if any(len(t.shape) == 1 for t in tensors) else "")
    return Fix(
        f"Grow {what} to {rows} rows (new rows = mean of the trained rows)"
        + (f" and set {' and '.join(keys)}" if keys else ""),
        Applicability.UNSAFE,
        tuple(edits),
    )


class TokenizerExceedsVocab(ModelOrConfigRule):
    id = "VOC001"
    name = "tokenizer-exceeds-vocab"
    summary = "The tokenizer produces ids at or above the declared vocabulary size or the embedding rows"
    severity = Severity.ERROR

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        view = vocab_view(target)
        tok = view.tokenizer
        if tok is None:
            return
        for size in view.declared + view.rows:
            if tok.value <= size.value:
                continue
            message = (
                f"{tok.what} has {tok.value} ids but {size.what} is {size.value}: ids {size.value}.."
                f"{tok.value - 1} index past the embedding ({OUT_OF_RANGE})"
            )
            if size.kind != "declared":
                message = (
                    f"{tok.what} has {tok.value} ids but {size.what} has {size.value} rows: ids "
                    f"{size.value}..{tok.value - 1} index past it ({OUT_OF_RANGE})"
                )
            fix = _resize_fix(view, tok.value)
            fitting = [r.value for r in view.embeddings if r.value >= tok.value]
            if size.kind == "declared" and view.builds_model:
                # A training config builds the model for its tokenizer.
                key = size.entry.key if size.entry else "n_vocab"
                fix = _set_value_fix(view, size, tok.value, f"Set {key} to {tok.value}")
            elif size.kind == "declared" and fitting:
                # A model config follows weights that already fit the tokenizer.
                fix = _set_value_fix(view, size, fitting[0], f"Set vocab_size to {fitting[0]}")
            yield self.finding(
                message,
                size.path,
                size.pointer,
                size.line,
                size.column,
                {"tokenizer_ids": tok.value, "tokenizer": tok.path, "size": size.value, "size_from": size.what},
                fix,
            )


class VocabSizeMismatch(ModelOrConfigRule):
    id = "VOC002"
    name = "vocab-size-mismatch"
    summary = "A declared vocabulary size (vocab_size, n_vocab) differs from the embedding rows in the weights"
    severity = Severity.ERROR

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        view = vocab_view(target)
        for declared in view.declared:
            for rows in view.embeddings:
                if declared.value == rows.value:
                    continue
                if view.builds_model:
                    consequence = (
                        "load_state_dict fails with a size mismatch, and with strict=False the model "
                        "keeps randomly initialised embeddings"
                    )
                else:
                    consequence = (
                        "from_pretrained refuses the checkpoint with a size mismatch; "
                        "ignore_mismatched_sizes=True would re-initialise embedding and head randomly"
                    )
                fix = None
                tok = view.tokenizer
                if tok is None or tok.value <= rows.value:
                    key = declared.entry.key if declared.entry else "vocab_size"
                    fix = _set_value_fix(view, declared, rows.value, f"Set {key} to {rows.value} from the weights")
                yield self.finding(
                    f"{declared.what} is {declared.value} but {rows.what} has {rows.value} rows: {consequence}",
                    declared.path,
                    declared.pointer,
                    declared.line,
                    declared.column,
                    {"declared": declared.value, "rows": rows.value, "rows_from": rows.path},
                    fix,
                )


class EmbeddingHeadMismatch(ModelOrConfigRule):
    id = "VOC003"
    name = "embedding-head-mismatch"
    summary = "The input embedding and the output head of the same vocabulary have different row counts"
    severity = Severity.ERROR

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        view = vocab_view(target)
        for emb in view.embeddings:
            for head in view.rows:
                if head.kind != "head" or head.path != emb.path or head.value == emb.value:
                    continue
                yield self.finding(
                    f"{emb.what} has {emb.value} rows but {head.what} has {head.value}: the model cannot "
                    "predict the ids it embeds (or embeds ids it cannot predict); resize both together",
                    head.path,
                    head.pointer,
                    evidence={"embedding": emb.value, "head": head.value},
                )


class UnexplainedSurplus(ModelOrConfigRule):
    id = "VOC004"
    name = "unexplained-surplus"
    summary = "Embedding rows far above the tokenizer's ids, beyond normal padding to a multiple of 64/128"
    severity = Severity.WARNING
    options: ClassVar[dict[str, tuple[type, Any]]] = {"padding-multiple": (int, 64), "max-surplus": (int, 1024)}

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        view = vocab_view(target)
        tok = view.tokenizer
        if tok is None:
            return
        for rows in view.embeddings:
            if rows.value <= tok.value or is_normal_padding(
                rows.value, tok.value, self.padding_multiple, self.max_surplus
            ):
                continue
            surplus = rows.value - tok.value
            multiple = self.padding_multiple
            yield self.finding(
                f"{rows.what} has {rows.value} rows, {surplus} more than the {tok.value} ids of {tok.what}, and is "
                f"not a padding to a multiple of {multiple} ({padded_size(tok.value, multiple)}): the checkpoint "
                "was extended for a different tokenizer, or rows "
                f"{tok.value}..{rows.value - 1} are dead weight",
                rows.path,
                rows.pointer,
                evidence={"rows": rows.value, "tokenizer_ids": tok.value, "surplus": surplus},
            )
        if not view.builds_model:
            return
        for size in view.declared:  # n_vocab: 3000 beside a 2535-id tokenizer builds 465 rows no id reaches
            if size.value <= tok.value or is_normal_padding(
                size.value, tok.value, self.padding_multiple, self.max_surplus
            ):
                continue
            surplus = size.value - tok.value
            yield self.finding(
                f"{size.what} is {size.value}, {surplus} more than the {tok.value} ids of {tok.what}: the model gets "
                f"rows {tok.value}..{size.value - 1} that no token reaches (dead rows, and a size that matches no "
                f"checkpoint of this tokenizer); set it to {tok.value}",
                size.path,
                size.pointer,
                size.line,
                size.column,
                evidence={"declared": size.value, "tokenizer_ids": tok.value, "surplus": surplus},
            )


class MergedTokenizerMovedIds(Rule):
    id = "VOC005"
    name = "merged-tokenizer-moved-ids"
    summary = "A merged tokenizer changed the ids of base tokens (the base tokenizer is named by the config)"
    severity = Severity.ERROR

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        base, merged = target.base_tokenizer, target.tokenizer
        if base is None or merged is None or base.tokenizer is None or merged.tokenizer is None:
            return
        base_file, merged_file = base.tokenizer.file, merged.tokenizer.file
        if base_file is None or merged_file is None or base_file.path == merged_file.path:
            return
        moved = []
        missing = []
        for token, base_id in sorted(base_file.vocab.items(), key=lambda kv: kv[1]):
            new_id = merged_file.vocab.get(token)
            if new_id is None:
                missing.append(token)
            elif new_id != base_id:
                moved.append((token, base_id, new_id))
        if not moved and not missing:
            return
        examples = ", ".join(f"{t!r} {a} -> {b}" for t, a, b in moved[:3])
        parts = []
        if moved:
            parts.append(f"moved {len(moved)} of {len(base_file.vocab)} base tokens (for example {examples})")
        if missing:
            parts.append(f"dropped {len(missing)} (for example {missing[0]!r})")
        entry = merged.entry
        yield self.finding(
            f"the merged tokenizer {merged_file.path} {' and '.join(parts)} compared with the base "
            f"tokenizer {base_file.path}: pretrained and frozen embedding rows now belong to other "
            "tokens",
            target.path,
            entry.pointer,
            entry.line,
            entry.column,
            {"moved": len(moved), "missing": len(missing), "base": base_file.path, "merged": merged_file.path},
        )


class UntrainedRows(ModelOrConfigRule):
    id = "VOC006"
    name = "untrained-rows"
    summary = "Embedding rows of new tokens that are all zeros, identical to each other, or far from trained norms"
    severity = Severity.WARNING

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        from ttsdoctor.artifacts.row_stats import row_report

        for tensor, new_ids, first_new, why in _new_rows(target):
            report = row_report(tensor, new_ids, first_new)
            if report is None:
                continue
            problems = []
            if report.zero:
                problems.append(f"{report.zero} are all zeros")
            if report.duplicates:
                problems.append(f"{report.duplicates} are identical to another new row")
            if report.outliers:
                problems.append(
                    f"{report.outliers} have a norm far from the trained rows' median {report.median_norm:.3g}"
                )
            if not problems:
                continue
            yield self.finding(
                f"of {report.checked} new rows ({why}) of {tensor.name} in {tensor.path}, {', '.join(problems)}: "
                "they were never trained (fine right before fine-tuning, wrong for inference or for frozen rows)",
                tensor.path,
                "/" + tensor.name,
                evidence={
                    "checked": report.checked,
                    "zero": report.zero,
                    "duplicates": report.duplicates,
                    "outliers": report.outliers,
                    "example_ids": report.examples,
                },
            )


@singledispatch
def _new_rows(target: ModelDir | TrainingConfig) -> Iterator[tuple[TensorInfo, list[int], int, str]]:
    """(embedding, ids of new rows, first new id, why they are new) for each safetensors embedding."""
    raise TypeError(type(target).__name__)


@_new_rows.register
def _model_new_rows(target: ModelDir) -> Iterator[tuple[TensorInfo, list[int], int, str]]:
    emb = target.embedding
    tok = target.tokenizer.file if target.tokenizer is not None else None
    if emb is None or tok is None or emb.data_start is None or emb.rows is None:
        return
    # eos and bos rows must be trained; a pad row is zero by design (nn.Embedding padding_idx)
    used = {i for d in target.special_decls if d.text_space and d.role in ("eos", "bos") for i in d.ids}
    pads = {i for d in target.special_decls if d.role == "pad" for i in d.ids}
    found = {token_id: a.special for a in tok.declared_added if (token_id := tok.token_id(a.content)) is not None}
    rows = emb.rows
    ids = sorted(i for i, special in found.items() if (not special or i in used) and i < rows and i not in pads)
    if ids:
        yield emb, ids, ids[0], "tokens added to the base vocabulary"


@_new_rows.register
def _config_new_rows(target: TrainingConfig) -> Iterator[tuple[TensorInfo, list[int], int, str]]:
    base = _base_size(target)
    named = target.tokenizer
    tok_ids = named.tokenizer.file.id_count if named and named.tokenizer and named.tokenizer.file else None
    if base is None or tok_ids is None or tok_ids <= base[0]:
        return
    for weights_file in target.named("weights"):
        for size in _tensor_sizes(weights_file.weights):
            tensor = size.tensor
            if size.kind == "embedding" and tensor is not None and tensor.data_start is not None:
                upper = min(tok_ids, size.value)
                if upper > base[0]:
                    yield tensor, list(range(base[0], upper)), base[0], f"ids {base[0]}..{upper - 1} above {base[1]}"


KNOWN_BASES = (
    ("chatterbox", "multilingual", 2454, "the Chatterbox multilingual base vocabulary (2454)"),
    ("t3_mtl", "", 2454, "the Chatterbox multilingual base vocabulary (2454)"),
    ("chatterbox", "", 704, "the Chatterbox English base vocabulary (704)"),
)


def _base_size(target: TrainingConfig) -> tuple[int, str, Entry | None] | None:
    """The base vocabulary size: a base tokenizer, an original_vocab_size key, or a known base model."""
    base = target.base_tokenizer
    if base is not None and base.tokenizer is not None and base.tokenizer.file is not None:
        return base.tokenizer.file.id_count, f"the base tokenizer {base.tokenizer.file.path}", base.entry
    entry = target.first_int(*BASE_KEYS)
    if entry is not None:
        return entry.value, f"{entry.key} {entry.value}", entry
    strings = " ".join(str(e.value).lower() for e in target.entries if isinstance(e.value, str))
    strings += " " + os.path.basename(target.path).lower()
    for marker, marker2, size, label in KNOWN_BASES:
        if marker in strings and marker2 in strings:
            return size, label, None
    return None
