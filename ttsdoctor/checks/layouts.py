"""Rules for non-Hugging-Face layouts: F5-TTS symbol lists and coqui XTTS audio tokens."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import singledispatch

from ttsdoctor.artifacts.embeddings import text_embedding
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.tensors import TensorInfo, Weights
from ttsdoctor.artifacts.tokenizer import SymbolList
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.finding import Applicability, Finding, Fix, ResizeTensor, Severity
from ttsdoctor.fix_policy import resizable
from ttsdoctor.rule import ModelOrConfigRule, Rule

KNOWN_F5_VOCABS = {2545: "the Emilia pinyin vocab.txt (2545 symbols)", 256: "the byte tokenizer (256 symbols)"}


@singledispatch
def _f5_inputs(target: ModelDir | TrainingConfig) -> tuple[SymbolList | None, Weights]:
    """The symbol list (vocab.txt) and the weights it must fit."""
    raise TypeError(type(target).__name__)


@_f5_inputs.register
def _model_f5_inputs(target: ModelDir) -> tuple[SymbolList | None, Weights]:
    symbols = target.tokenizer.symbols if target.tokenizer is not None else None
    return symbols, target.weights or Weights()


@_f5_inputs.register
def _config_f5_inputs(target: TrainingConfig) -> tuple[SymbolList | None, Weights]:
    weights = Weights()
    for named in target.named("weights"):
        if named.weights is not None:
            weights.files += named.weights.files
    symbols = None
    for named in target.named("tokenizer") + target.named("base_tokenizer"):
        if named.tokenizer is not None and named.tokenizer.symbols is not None:
            symbols = named.tokenizer.symbols
    if symbols is None:
        byte = any(e.value == "byte" for e in target.find("tokenizer"))
        if byte:
            symbols = SymbolList("<byte tokenizer>", tuple(chr(i) for i in range(256)))
    return symbols, weights


# What F5-TTS's prepare_csv_wavs.py writes beside the vocab.txt of a prepared dataset
F5_DATASET_FILES = ("raw.arrow", "duration.json")


def _f5_list(target: ModelDir | TrainingConfig, symbols: SymbolList, embedding: TensorInfo | None) -> bool:
    """Whether a vocab.txt is F5-TTS's symbol list: its first line is the space F5-TTS puts there, the folder or
    config is F5-TTS's (a checkpoint with its text embedding, a training config of the family), or it sits in a
    prepared F5-TTS dataset. Anything else named vocab.txt (a mass-spectrometry token list, a JSON vocabulary
    saved under that name) is not judged by F5-TTS's rules."""
    if symbols.path.startswith("<") or symbols.symbols[:1] == (" ",):
        return True
    if target.family is not None and target.family.name == "F5-TTS":
        return True
    if embedding is not None and "text_embed" in embedding.name:
        return True
    folder = os.path.dirname(symbols.path)
    return any(os.path.lexists(os.path.join(folder, name)) for name in F5_DATASET_FILES)


class F5Vocab(ModelOrConfigRule):
    id = "VOC007"
    name = "f5-vocab"
    summary = "An F5-TTS vocab.txt with duplicates, no space at index 0, or a size the checkpoint was not trained with"
    severity = Severity.ERROR

    def check_either(self, target: ModelDir | TrainingConfig) -> Iterator[Finding]:
        symbols, weights = _f5_inputs(target)
        if symbols is None:
            return
        embedding = text_embedding(weights.tensors)
        if not _f5_list(target, symbols, embedding):
            return
        path = symbols.path if not symbols.path.startswith("<") else target.path
        if symbols.symbols and symbols.symbols[0] != " " and not symbols.path.startswith("<"):
            where = symbols.symbols.index(" ") if " " in symbols.symbols else None
            placed = (
                f"{symbols.path} has no space symbol, which must be its first line"
                if where is None
                else f"the space symbol is at line {where + 1} of {symbols.path}, not the first line"
            )
            yield self.finding(
                f"{placed}: F5-TTS asserts vocab_char_map[' '] == 0 and uses id 0 for padding",
                path,
                line=1,
                evidence={"space_index": where},
            )
        duplicates = symbols.duplicates
        if duplicates:
            symbol, first, again = duplicates[0]
            yield self.finding(
                f"{symbols.path} repeats {len(duplicates)} symbol(s) (first {symbol!r} on lines "
                f"{first + 1} and {again + 1}): F5-TTS builds a vocabulary of {symbols.unique} "
                f"symbols ({symbols.unique + 1} embedding rows) but ids follow line numbers up to "
                f"{len(symbols.symbols) - 1}, so later symbols shift and the last ones index past "
                "the embedding",
                path,
                line=again + 1,
                evidence={"lines": len(symbols.symbols), "unique": symbols.unique},
            )
        if embedding is None or embedding.rows is None or "text_embed" not in embedding.name:
            return
        rows = embedding.rows
        expected = symbols.unique + 1  # row 0 is the filler token
        if rows == expected:
            return
        known = KNOWN_F5_VOCABS.get(rows - 1)
        hint = f"; {rows} rows is what {known} gives: the checkpoint was trained with it" if known else ""
        fix = None
        if rows < expected and not duplicates and symbols.symbols[:1] == (" ",) and resizable(embedding, weights):
            # F5-TTS fine-tuning appends the new symbols to the pretrained vocab.txt and grows the embedding
            # (its expand_model_embeddings): the trained rows keep their ids.
            fix = Fix(
                f"Grow {embedding.name} to {expected} rows (new rows = mean of the trained rows), for a vocab.txt "
                f"that appends {expected - rows} symbols to the one the checkpoint was trained with",
                Applicability.UNSAFE,
                (ResizeTensor(embedding.path, embedding.name, expected, rows),),
            )
        yield self.finding(
            f"{symbols.path} has {symbols.unique} symbols, so F5-TTS builds {expected} text "
            f"embedding rows (row 0 is the filler), but {embedding.name} in {embedding.path} has "
            f"{rows}: loading fails with a size mismatch{hint}",
            path,
            evidence={"symbols": symbols.unique, "rows": rows, "known_vocab": known},
            fix=fix,
        )


class XttsAudioTokens(Rule):
    id = "COD004"
    name = "xtts-audio-tokens"
    summary = "XTTS gpt_num_audio_tokens against the mel embedding / head rows and the start / stop audio tokens"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.config is None:
            return
        assert target.config is not None
        args = target.config.data.get("model_args")
        if not isinstance(args, dict) or not isinstance(args.get("gpt_num_audio_tokens"), int):
            return
        count = args["gpt_num_audio_tokens"]
        doc = target.config
        for key in ("gpt_start_audio_token", "gpt_stop_audio_token"):
            value = args.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < count:
                line, column = doc.position(f"/model_args/{key}")
                yield self.finding(
                    f"{key} {value} is outside gpt_num_audio_tokens {count}: the mel embedding has "
                    "no row for it (released configs use 1026 with start 1024 and stop 1025)",
                    doc.path,
                    f"/model_args/{key}",
                    line,
                    column,
                )
        for name, tensor in target.tensors.items():
            if not name.endswith(("mel_embedding.weight", "mel_head.weight", "mel_head.bias")) or tensor.rows is None:
                continue
            if tensor.rows != count:
                line, column = doc.position("/model_args/gpt_num_audio_tokens")
                yield self.finding(
                    f"gpt_num_audio_tokens is {count} but {name} in {tensor.path} has {tensor.rows} "
                    f"rows: the checkpoint was trained with {tensor.rows} audio tokens (a DVAE of "
                    f"{tensor.rows - 2} codes plus start and stop); loading fails with a size "
                    "mismatch",
                    doc.path,
                    "/model_args/gpt_num_audio_tokens",
                    line,
                    column,
                    {"config": count, "rows": tensor.rows, "tensor": name},
                )
