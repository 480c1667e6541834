"""Every rule, in one explicit tuple. Adding a rule means adding it here."""

from __future__ import annotations

from ttsdoctor.checks.adapters import (
    AdapterBaseRows,
    AdapterNeverTrained,
    NewRowsUntrained,
    QuantizationConfigOnFullWeights,
)
from ttsdoctor.checks.artifacts import (
    IncompleteRead,
    MalformedValue,
    MissingContentFile,
    MissingNamedFile,
    NotChecked,
    UnreadableArtifact,
)
from ttsdoctor.checks.attention import EagerAttentionPinned, ForcedOutputAttentions
from ttsdoctor.checks.codec import AudioTokenRange, CodebookRows, CodecMismatch, IdsBeyondCodec, SampleRateMismatch
from ttsdoctor.checks.environment import Bf16Unsupported, Float16Overflow, TransformersTooOld
from ttsdoctor.checks.freeze import FreezeIndexNotBase, FreezeIndexOutOfRange
from ttsdoctor.checks.generation import (
    DictGenerationConfig,
    GenerateWithoutAttentionMask,
    GenerationKeysInConfig,
    InvalidGenerationConfig,
)
from ttsdoctor.checks.layouts import F5Vocab, XttsAudioTokens
from ttsdoctor.checks.positions import PositionOverflow
from ttsdoctor.checks.security import AmbiguousPickle, EvaluatedString, PathEscape, RemoteCode, UnsafePickle
from ttsdoctor.checks.serving import (
    AudioLengthBudget,
    EndOfSpeechNotAStop,
    FamilySampling,
    GgufTtsTokens,
    GgufVocabMismatch,
)
from ttsdoctor.checks.suppressions import UnusedSuppression
from ttsdoctor.checks.tokens import (
    AddedTokenIdMismatch,
    MissingPad,
    PadIsEos,
    PadIsEosInSource,
    SpecialIdInconsistent,
    SpecialIdOrdinaryToken,
    SpecialIdOutOfRange,
    TokenizerRebuiltByModelType,
)
from ttsdoctor.checks.training import HardCodedTokenIds, SequenceBudget, TruncatedEndOfSpeech
from ttsdoctor.checks.vocab import (
    EmbeddingHeadMismatch,
    MergedTokenizerMovedIds,
    TokenizerExceedsVocab,
    UnexplainedSurplus,
    UntrainedRows,
    VocabSizeMismatch,
)
from ttsdoctor.rule import Rule

ALL_RULES: tuple[Rule, ...] = (
    UnreadableArtifact(),
    MalformedValue(),
    MissingNamedFile(),
    MissingContentFile(),
    IncompleteRead(),
    NotChecked(),
    PadIsEos(),
    PadIsEosInSource(),
    SpecialIdOutOfRange(),
    SpecialIdOrdinaryToken(),
    SpecialIdInconsistent(),
    MissingPad(),
    AddedTokenIdMismatch(),
    TokenizerRebuiltByModelType(),
    TokenizerExceedsVocab(),
    VocabSizeMismatch(),
    EmbeddingHeadMismatch(),
    UnexplainedSurplus(),
    MergedTokenizerMovedIds(),
    UntrainedRows(),
    F5Vocab(),
    FreezeIndexOutOfRange(),
    FreezeIndexNotBase(),
    DictGenerationConfig(),
    GenerateWithoutAttentionMask(),
    GenerationKeysInConfig(),
    InvalidGenerationConfig(),
    ForcedOutputAttentions(),
    EagerAttentionPinned(),
    PositionOverflow(),
    CodecMismatch(),
    CodebookRows(),
    AudioTokenRange(),
    XttsAudioTokens(),
    UnsafePickle(),
    RemoteCode(),
    EvaluatedString(),
    PathEscape(),
    AmbiguousPickle(),
    TransformersTooOld(),
    Bf16Unsupported(),
    Float16Overflow(),
    IdsBeyondCodec(),
    SampleRateMismatch(),
    AudioLengthBudget(),
    EndOfSpeechNotAStop(),
    FamilySampling(),
    GgufTtsTokens(),
    GgufVocabMismatch(),
    NewRowsUntrained(),
    QuantizationConfigOnFullWeights(),
    AdapterNeverTrained(),
    AdapterBaseRows(),
    TruncatedEndOfSpeech(),
    SequenceBudget(),
    HardCodedTokenIds(),
    UnusedSuppression(),
)

RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in ALL_RULES}
FAMILIES = tuple(sorted({rule.id.rstrip("0123456789") for rule in ALL_RULES}))


def select_rules(select: list[str] | None, ignore: list[str] | None) -> tuple[Rule, ...]:
    """Rules whose id starts with a selected prefix and with no ignored prefix. Raises ValueError on unknown codes."""
    for code in (select or []) + (ignore or []):
        if not any(rule.id.startswith(code.upper()) for rule in ALL_RULES) and code.upper() != "ALL":
            raise ValueError(f"unknown rule or family {code!r}")
    chosen = []
    for rule in ALL_RULES:
        if select and not any(code.upper() == "ALL" or rule.id.startswith(code.upper()) for code in select):
            continue
        if ignore and any(rule.id.startswith(code.upper()) for code in ignore):
            continue
        chosen.append(rule)
    return tuple(chosen)
