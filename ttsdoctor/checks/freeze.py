"""FRZ: embedding-freezing indices in training configs against the vocabulary they freeze."""

from __future__ import annotations

from collections.abc import Iterator

from ttsdoctor.artifacts.training_config import Entry, TrainingConfig
from ttsdoctor.checks.vocab import _base_size, vocab_view
from ttsdoctor.finding import Applicability, Finding, Fix, SetJsonValue, SetYamlValue, Severity
from ttsdoctor.rule import Rule

FREEZE_KEYS = (
    "freeze_until_index",
    "freeze_embeddings_until",
    "freeze_until",
    "frozen_vocab_size",
    "freeze_token_ids_below",
)
INDEX_LIST_KEYS = ("trainable_token_indices", "trainable_token_ids", "frozen_token_indices", "new_token_ids")


def _vocab(target: TrainingConfig) -> tuple[int, str] | None:
    view = vocab_view(target)
    if view.tokenizer is not None:
        return view.tokenizer.value, f"{view.tokenizer.what} has {view.tokenizer.value} ids"
    if view.declared:
        d = view.declared[0]
        return d.value, f"{d.what} is {d.value}"
    return None


def _set(target: TrainingConfig, entry: Entry, value: int, title: str) -> Fix:
    cls = SetYamlValue if target.format == "yaml" else SetJsonValue
    return Fix(title, Applicability.SAFE, (cls(target.path, entry.pointer, value),))


class FreezeIndexOutOfRange(Rule):
    id = "FRZ001"
    name = "freeze-index-out-of-range"
    summary = "A freeze index (or a trainable token index) at or above the vocabulary size"
    severity = Severity.ERROR

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        vocab = _vocab(target)
        if vocab is None:
            return
        size, what = vocab
        base = _base_size(target)
        for entry in target.find(*FREEZE_KEYS):
            value = entry.value
            if not isinstance(value, int) or isinstance(value, bool) or value < size:
                continue
            fix = None
            if base is not None and base[0] < size:
                fix = _set(target, entry, base[0], f"Set {entry.key} to {base[0]} ({base[1]})")
            if value == size:
                yield self.finding(
                    f"{entry.key} {value} equals the vocabulary size ({what}): every row is frozen "
                    "and the new tokens are never trained",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                    {"index": value, "vocab": size},
                    fix,
                    severity=Severity.WARNING,
                )
            else:
                yield self.finding(
                    f"{entry.key} {value} is above the vocabulary size ({what}): every row is "
                    "frozen, and code that slices the embedding up to it fails or trains nothing",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                    {"index": value, "vocab": size},
                    fix,
                )
        for entry in target.under(*INDEX_LIST_KEYS):
            value = entry.value
            if isinstance(value, int) and not isinstance(value, bool) and value >= size:
                key = next(k for k in INDEX_LIST_KEYS if f"/{k}" in entry.pointer)
                yield self.finding(
                    f"{key} contains {value}, outside the vocabulary ({what}): {OUT_OF_RANGE_TEXT}",
                    target.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                    {"index": value, "vocab": size},
                )


OUT_OF_RANGE_TEXT = "PEFT indexes the embedding with it (IndexError on CPU, device-side assert on CUDA)"


class FreezeIndexNotBase(Rule):
    id = "FRZ002"
    name = "freeze-index-not-base"
    summary = "A freeze index that differs from the base vocabulary size it should equal"
    severity = Severity.WARNING

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        base = _base_size(target)
        if base is None:
            return
        base_size, label, _ = base
        vocab = _vocab(target)
        for entry in target.find(*FREEZE_KEYS):
            value = entry.value
            if not isinstance(value, int) or isinstance(value, bool) or value == base_size:
                continue
            if vocab is not None and value >= vocab[0]:
                continue  # FRZ001 reports it
            if value < base_size:
                effect = (
                    f"base tokens {value}..{base_size - 1} are trained too, drifting away from the pretrained model"
                )
            else:
                effect = f"new tokens {base_size}..{value - 1} stay frozen at their initial values"
            yield self.finding(
                f"{entry.key} {value} differs from {label}: {effect}",
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                {"index": value, "base": base_size},
                _set(target, entry, base_size, f"Set {entry.key} to {base_size}"),
            )
