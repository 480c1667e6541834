"""COD: codebook levels, codebook sizes and audio-code tokens against the codec the model speaks."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from ttsdoctor.artifacts.hf_config import ConfigScope
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.tokenizer import TokenizerFile
from ttsdoctor.artifacts.training_config import TrainingConfig
from ttsdoctor.checks import pysource
from ttsdoctor.checks.serving import config_family, loaded_models, source_family
from ttsdoctor.codecs import Codec, codecs, family_layout, find_codec
from ttsdoctor.finding import Applicability, Finding, Fix, SetJsonValue, SetYamlValue, Severity
from ttsdoctor.rule import Rule

VALLE_BACKENDS = {
    "encodec": "encodec_24khz",
    "vocos": "vocos",
    "dac": "dac_44khz",
    "nemo": "nvidia_audio_codec_44khz",
    "audiodec": None,
}


def _scopes(model: ModelDir) -> dict[str, ConfigScope]:
    return {scope.name: scope for scope in model.config_scopes}


def _model_codec(model: ModelDir) -> tuple[Codec | None, ConfigScope | None]:
    scopes = _scopes(model)
    audio = scopes.get("audio_encoder") or scopes.get("codec_config")
    if audio is not None:
        codec = find_codec(audio.get_str("model_type"), audio.get_int("sampling_rate"))
        if codec is not None:
            return codec, audio
    layout = family_layout(model.family.name if model.family else None)
    return (find_codec(layout.get("codec")), audio) if layout.get("codec") else (None, audio)


class CodecMismatch(Rule):
    id = "COD001"
    name = "codec-mismatch"
    summary = "The model's codebook levels, sample rate or frame rate differ from its audio codec"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        codec, audio = _model_codec(target)
        decoder = _scopes(target).get("decoder")
        if codec is None or decoder is None:
            return
        levels = decoder.get_int("num_codebooks")
        codec_levels = (audio.get_int("num_codebooks") if audio is not None else None) or codec.codebooks
        if levels is not None and levels != codec_levels:
            line, column = decoder.doc.position(decoder.pointer("num_codebooks"))
            yield self.finding(
                f"the decoder predicts {levels} codebooks but the codec {codec.name} has "
                f"{codec_levels}: generated codes cannot be decoded (or lose the finest levels)",
                decoder.doc.path,
                decoder.pointer("num_codebooks"),
                line,
                column,
                {"model": levels, "codec": codec_levels, "codec_name": codec.name},
            )
        if audio is None:
            return
        rate = audio.get_number("frame_rate")
        if rate is not None and rate not in codec.frame_rates_seen and abs(rate - codec.frames_per_second) > 0.5:
            line, column = audio.doc.position(audio.pointer("frame_rate"))
            seen = ", ".join(f"{r:g}" for r in codec.frame_rates_seen)
            yield self.finding(
                f"frame_rate {rate:g} but {codec.name} runs at {codec.frames_per_second:g} frames/s "
                f"(implementations use {seen}): durations and max lengths in frames are wrong",
                audio.doc.path,
                audio.pointer("frame_rate"),
                line,
                column,
                severity=Severity.WARNING,
            )
        sample_rate = audio.get_int("sampling_rate")
        if sample_rate is not None and sample_rate != codec.sample_rate:
            line, column = audio.doc.position(audio.pointer("sampling_rate"))
            yield self.finding(
                f"sampling_rate {sample_rate} but {codec.name} expects {codec.sample_rate}: audio is "
                "resampled wrongly or decoded at the wrong speed",
                audio.doc.path,
                audio.pointer("sampling_rate"),
                line,
                column,
            )

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        # VALL-E style configs name the codec by audio_backend
        backend = next((e for e in config.find("audio_backend") if isinstance(e.value, str)), None)
        if backend is None:
            return
        key = VALLE_BACKENDS.get(backend.value.lower())
        codec = find_codec(key) if key else find_codec(backend.value)
        if codec is None:
            return
        for entry in config.find("resp_levels", "n_resp_levels"):
            value = entry.value
            if isinstance(value, int) and not isinstance(value, bool) and value > codec.codebooks:
                yield self.finding(
                    f"{entry.key} {value} is above the {codec.codebooks} codebooks the "
                    f"{backend.value!r} backend ({codec.name}) produces: levels {codec.codebooks}.."
                    f"{value - 1} are never in the data, and their heads learn nothing",
                    config.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                    {"resp_levels": value, "codebooks": codec.codebooks},
                )


class CodebookRows(Rule):
    id = "COD002"
    name = "codebook-rows"
    summary = "Audio-code embeddings without room for the codebook plus the model's stop / pad / bos tokens"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        codec, audio = _model_codec(target)
        decoder = _scopes(target).get("decoder")
        if codec is None or decoder is None:
            return
        size = (audio.get_int("codebook_size") if audio is not None else None) or codec.codebook_size
        vocab = decoder.get_int("vocab_size")
        specials = {role: decoder.get_ids(f"{role}_token_id") for role in ("pad", "eos", "bos", "decoder_start")}
        special_ids = sorted({i for ids in specials.values() for i in ids})
        if vocab is not None and vocab < size:
            line, column = decoder.doc.position(decoder.pointer("vocab_size"))
            yield self.finding(
                f"decoder vocab_size {vocab} is smaller than the codebook size {size} of "
                f"{codec.name}: codes {vocab}..{size - 1} cannot be predicted",
                decoder.doc.path,
                decoder.pointer("vocab_size"),
                line,
                column,
            )
        tables = sorted(
            (name, t)
            for name, t in target.tensors.items()
            if re.search(r"decoder\.embed_tokens\.\d+\.weight$", name) and len(t.shape) == 2
        )
        for name, table in tables:
            rows = table.rows or 0
            need = max([size, *[i + 1 for i in special_ids]])
            if rows < need:
                worst = max(special_ids) if special_ids and max(special_ids) >= rows else size - 1
                yield self.finding(
                    f"{name} has {rows} rows but codebook {size} codes plus special ids "
                    f"{special_ids} need {need}: id {worst} indexes past it",
                    table.path,
                    "/" + name,
                    evidence={"rows": rows, "codebook_size": size, "special_ids": special_ids},
                )

    def check_training_config(self, config: TrainingConfig) -> Iterator[Finding]:
        # Chatterbox T3 configs: speech_tokens_dict_size against the speech embedding
        size = config.first_int("speech_tokens_dict_size")
        if size is None:
            return
        for key in ("start_speech_token", "stop_speech_token"):
            entry = config.first_int(key)
            if entry is not None and entry.value >= size.value:
                yield self.finding(
                    f"{key} {entry.value} is outside speech_tokens_dict_size {size.value}: the speech "
                    "embedding has no row for it",
                    config.path,
                    entry.pointer,
                    entry.line,
                    entry.column,
                )
        for named in config.named("weights"):
            if named.weights is None:
                continue
            for name, tensor in named.weights.tensors.items():
                if name.endswith("speech_emb.weight") and tensor.rows is not None and tensor.rows != size.value:
                    yield self.finding(
                        f"speech_tokens_dict_size {size.value} but {name} in {tensor.path} has "
                        f"{tensor.rows} rows: the checkpoint does not load into the model",
                        config.path,
                        size.pointer,
                        size.line,
                        size.column,
                    )


def _first_missing(codes: dict[int, int], limit: int) -> list[int]:
    """The first `limit` numbers absent from codes, in time linear in the number of codes."""
    out: list[int] = []
    expected = 0
    for n in sorted(codes):
        while expected < n and len(out) < limit:
            out.append(expected)
            expected += 1
        if len(out) >= limit:
            break
        expected = n + 1
    return out


def numbered_tokens(tok: TokenizerFile, prefix: str, suffix: str) -> dict[int, int]:
    """code number -> token id, for added tokens spelled prefix + N + suffix (audio codes are added tokens)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    out = {}
    for token_id, content in tok.added.items():
        if content.startswith(prefix):
            match = pattern.match(content)
            if match:
                out[int(match.group(1))] = token_id
    return out


class AudioTokenRange(Rule):
    id = "COD003"
    name = "audio-token-range"
    summary = "Audio-code tokens in the tokenizer that are missing, too few for the codec, or not contiguous ids"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.tokenizer is None:
            return
        tok = target.tokenizer.file if target.tokenizer is not None else None
        if tok is None:
            return
        layout = family_layout(target.family.name if target.family else None)
        specs = layout.get("audio_tokens") or [{"prefix": "<|", "suffix": "|>", "count": None}]
        codec = find_codec(layout.get("codec")) if layout.get("codec") else None
        for spec in specs:
            codes = numbered_tokens(tok, spec["prefix"], spec["suffix"])
            if len(codes) < 16 and spec["count"] is None:
                continue
            spelled = f"{spec['prefix']}N{spec['suffix']}"
            expected = spec["count"]
            family = target.family.name if target.family else "this model"
            if expected is not None and len(codes) != expected:
                via = f" ({codec.name}, {codec.codebook_size} codes)" if codec else ""
                detection = target.family_detection
                inferred = detection is not None and detection.from_tokens_only
                why = f" (the family is inferred from {detection.evidence} only)" if inferred and detection else ""
                yield self.finding(
                    f"the tokenizer has {len(codes)} {spelled} audio tokens but {family}{via} uses "
                    f"{expected}{why}: codes the codec emits have no token (or tokens no code)",
                    tok.path,
                    evidence={
                        "tokens": len(codes),
                        "expected": expected,
                        "family_from": detection and detection.evidence,
                    },
                    severity=Severity.WARNING if inferred else None,
                )
            if not codes:
                continue
            top = max(codes)
            missing_count = top + 1 - len(codes)  # codes are distinct non-negative numbers
            missing = _first_missing(codes, 20)  # never range(top + 1): a hostile <|4000000000|> is one token
            if missing_count > 0:
                shown = ", ".join(str(n) for n in missing[:5])
                verb = "is" if missing_count == 1 else "are"
                yield self.finding(
                    f"{missing_count} of the {spelled} codes 0..{top} {verb} missing from the tokenizer "
                    f"(for example {shown}): those codes cannot be written or read",
                    tok.path,
                    evidence={"missing": missing},
                )
            lowest = min(codes)
            first = codes[lowest]
            jumps = [n for n in sorted(codes) if codes[n] != first + n - lowest]
            if jumps and not missing:
                n = jumps[0]
                yield self.finding(
                    f"{spelled} token ids are not contiguous: code {n} has id {codes[n]}, not "
                    f"{first + n - lowest}: code that maps code N to first_id + N reads the wrong "
                    "tokens",
                    tok.path,
                    evidence={"first_jump": n},
                )


class IdsBeyondCodec(Rule):
    id = "COD005"
    name = "ids-beyond-codec"
    summary = "The audio head or an audio stop id reaches past the codec's codebook and is not a declared special id"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        """CSM-style configs: `audio_vocab_size` is the width of every codebook head; the codec decodes
        `codebook_size` codes, so ids above it must each be a declared special (pad / eos / bos) the generation loop
        removes. A surplus of 64 or more is padding of the head, which training never targets."""
        codec, audio = _model_codec(target)
        if codec is None:
            return
        size = (audio.get_int("codebook_size") if audio is not None else None) or codec.codebook_size
        for scope in target.config_scopes:
            key = "audio_vocab_size"
            if scope.get_int(key) is None and not scope.name and target.model_type == "csm":
                key = "vocab_size"  # CsmConfig's own name for it (transformers 5 saves no audio_vocab_size)
            width = scope.get_int(key)
            if width is None or width <= size or width - size >= 64:
                continue
            declared = {
                i for key in ("codebook_pad_token_id", "codebook_eos_token_id", "codebook_bos_token_id")
                for i in scope.get_ids(key)
            }  # fmt: skip
            undeclared = [i for i in range(size, width) if i not in declared]
            if not undeclared:
                continue
            line, column = scope.doc.position(scope.pointer(key))
            yield self.finding(
                f"{key} {width} in {scope.doc.path} makes every codebook head {width}-way, but "
                f"{codec.name} decodes {size} codes per codebook: ids {undeclared[0]}..{undeclared[-1]} are neither "
                f"codes nor declared specials (declared: {sorted(declared) or 'none'}); a sampled one reaches the "
                "codec's embedding and fails (IndexError on CPU, device-side assert on CUDA)",
                scope.doc.path,
                scope.pointer(key),
                line,
                column,
                {key: width, "codebook_size": size, "undeclared": undeclared},
                Fix(
                    f"Mask ids {undeclared[0]}..{undeclared[-1]} out of the logits before sampling (or declare "
                    "them as special ids the generation loop removes)",
                    Applicability.DISPLAY_ONLY,
                ),
            )


# ----------------------------------------------------------------------------------------------------------------
# COD006: sample rates against the codec's

# Codecs that encode and decode audio at one rate. S3-tokenizer families (CosyVoice, Chatterbox) tokenise 16 kHz
# audio and speak through a separate 22.05/24 kHz vocoder: one "rate of the codec" does not exist for them.
_RATE_TEXT = re.compile(r"sampling_rate|samplerate|\.write\s*\(|\.save\s*\(|sample_rate")
_RATE_WORDS = ("sampling_rate", "samplerate", ".write", ".save", "sample_rate")
_RESAMPLE_TEXT = re.compile(r"[Rr]esample")
_RATE_KEYS = ("sample_rate", "sampling_rate", "target_sample_rate", "target_sr", "audio_sample_rate")
_DECODES = ("decode", "decode_code", "decode_codes", "detokenize", "codes_to_audio")
_MIN_AUDIO_RATE = 4000  # below any audio sample rate in use (telephony is 8 kHz)


def _reconstructing(codec: Codec | None) -> Codec | None:
    return codec if codec is not None and codec.key != "s3tokenizer" else None


def _source_codec(source: SourceFile) -> tuple[Codec | None, str]:
    """The one codec a file works with: a codec checkpoint it loads by name ("hubertsiuzdak/snac_24khz",
    "HKUSTAudio/xcodec2"), else the codec of the one TTS family whose model it loads. Cached per file."""
    if "source_codec" not in source.cache:
        source.cache["source_codec"] = _find_source_codec(source)
    found: tuple[Codec | None, str] = source.cache["source_codec"]
    return found


def _find_source_codec(source: SourceFile) -> tuple[Codec | None, str]:
    models = [m.lower() for m in loaded_models(source)]
    named = {c.key: c for c in codecs().values() for m in models if c.key in m.replace("-", "_")}
    if len(named) == 1:
        (loaded,) = named.values()
        return _reconstructing(loaded), f"the codec this file loads ({loaded.name})"
    if named:
        return None, ""
    facts = source_family(source)
    codec = find_codec(family_layout(facts.family).get("codec")) if facts is not None else None
    if codec is None or facts is None:
        return None, ""
    return _reconstructing(codec), f"{facts.family}'s codec ({codec.name})"


def _writer_rate(call: ast.Call) -> tuple[ast.expr, ast.expr] | None:
    """(audio, sample rate) of a call writing a waveform to a file: soundfile.write(file, data, samplerate),
    torchaudio.save(uri, src, sample_rate), scipy's wavfile.write(filename, rate, data)."""
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    owner = ast.unparse(func.value)
    args = call.args
    if func.attr == "write" and owner in ("sf", "soundfile"):
        data = args[1] if len(args) > 1 else _kw(call, "data")
        rate = args[2] if len(args) > 2 else _kw(call, "samplerate")
    elif func.attr == "save" and owner in ("torchaudio", "ta"):
        data = args[1] if len(args) > 1 else _kw(call, "src")
        rate = args[2] if len(args) > 2 else _kw(call, "sample_rate")
    elif func.attr == "write" and owner.endswith("wavfile"):
        rate = args[1] if len(args) > 1 else _kw(call, "rate")
        data = args[2] if len(args) > 2 else _kw(call, "data")
    else:
        return None
    return (data, rate) if data is not None and rate is not None else None


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    kw = pysource.keyword(call, name)
    return kw.value if kw is not None else None


def _decoded(expr: ast.expr, scope: ast.AST, line: int, depth: int = 0) -> bool:
    """Whether `expr` is (derived from) what a codec's decode() returned, following names back to their
    assignments in the function (a few steps: `audio = hat.squeeze().cpu().numpy()`)."""
    if depth > 5:
        return False
    for node in ast.walk(expr):
        if isinstance(node, ast.Call) and pysource.called_name(node) in _DECODES:
            return True
    for node in ast.walk(expr):
        if isinstance(node, ast.Name):
            value = pysource.assigned_value(scope, node.id, line)
            if value is not None and _decoded(value, scope, getattr(value, "lineno", line), depth + 1):
                return True
    return False


def _frame_rate_note(rate: int, codec: Codec | None = None) -> str:
    matches = [
        c.name
        for c in ([codec] if codec is not None and rate in codec.frame_rates_seen else codecs().values())
        if rate in c.frame_rates_seen or rate == c.frames_per_second
    ]
    return f" ({rate} is the frame rate of {', '.join(matches)}: frames per second, not samples)" if matches else ""


def _resamples_to(source: SourceFile, rate: int) -> bool:
    """Whether the file calls Resample / resample with `rate` among the arguments."""
    return any(
        pysource.int_value(source, arg, site.scope, site.node.lineno) == rate
        for site in pysource.calls(source, _RESAMPLE_TEXT, "Resample", "resample")
        for arg in [*site.node.args, *(kw.value for kw in site.node.keywords)]
    )


class SampleRateMismatch(Rule):
    id = "COD006"
    name = "sample-rate-mismatch"
    summary = "Audio prepared or written at a sample rate that is not the codec's, or a frame rate used as one"
    severity = Severity.WARNING

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        if not pysource.mentions(source.text, _RATE_WORDS, _RATE_TEXT):  # the alternation alone: ~0.4 ms a file
            return
        for site in pysource.calls(source, _RATE_TEXT, "Audio", "write", "save"):
            if site.name == "Audio":
                rate_expr, data = _kw(site.node, "sampling_rate"), None
                what = "the dataset's audio column is decoded at"
            else:
                found = _writer_rate(site.node)
                if found is None:
                    continue
                data, rate_expr = found
                what = "the waveform is written at"
            if rate_expr is None:
                continue
            rate = pysource.int_value(source, rate_expr, site.scope, site.node.lineno)
            if rate is None or rate <= 0:
                continue
            where = source.line_name(rate_expr.lineno)
            codec, whose = _source_codec(source)  # only for files with a literal rate to judge
            if rate < _MIN_AUDIO_RATE:
                yield self.finding(
                    f"{what} {rate} Hz at {where}: not an audio sample rate{_frame_rate_note(rate, codec)}",
                    source.path,
                    line=rate_expr.lineno,
                    column=rate_expr.col_offset + 1,
                    evidence={"rate": rate},
                    severity=Severity.ERROR,
                )
                continue
            if codec is None or rate == codec.sample_rate:
                continue
            if data is None and _resamples_to(source, codec.sample_rate):
                continue  # decoded at one rate, resampled to the codec's before encoding
            if data is not None and not _decoded(data, site.scope, site.node.lineno):
                continue  # not the codec's output (a reference clip, another model's audio)
            speed = "sped up" if (rate < codec.sample_rate) == (data is None) else "slowed down"
            effect = (
                f"it reads the clips as {codec.sample_rate} Hz audio: the model learns codes of {speed}, "
                "pitch-shifted speech"
                if data is None
                else f"the file plays the codec's output {speed} and pitch-shifted"
            )
            yield self.finding(
                f"{what} {rate} Hz at {where}, but {whose} works at {codec.sample_rate} Hz: {effect}",
                source.path,
                line=rate_expr.lineno,
                column=rate_expr.col_offset + 1,
                evidence={"rate": rate, "codec": codec.key, "codec_rate": codec.sample_rate},
                fix=Fix(f"Use {codec.sample_rate}", Applicability.DISPLAY_ONLY),
            )

    def check_training_config(self, target: TrainingConfig) -> Iterator[Finding]:
        facts = config_family(target)
        codec = _reconstructing(find_codec(family_layout(facts.family).get("codec"))) if facts is not None else None
        if codec is None or facts is None:
            return
        for entry in target.find(*_RATE_KEYS):
            value = entry.value
            if not isinstance(value, int) or isinstance(value, bool) or value == codec.sample_rate:
                continue
            cls = SetYamlValue if target.format == "yaml" else SetJsonValue
            yield self.finding(
                f"{entry.key}: {value} in {target.path}, but {facts.family}'s codec ({codec.name}) works at "
                f"{codec.sample_rate} Hz: audio prepared at {value} Hz is encoded as if it were {codec.sample_rate} Hz"
                f"{_frame_rate_note(value, codec) if value < _MIN_AUDIO_RATE else ''}",
                target.path,
                entry.pointer,
                entry.line,
                entry.column,
                {"rate": value, "codec": codec.key, "codec_rate": codec.sample_rate},
                Fix(
                    f"Set {entry.key} to {codec.sample_rate}",
                    Applicability.SAFE,
                    (cls(target.path, entry.pointer, codec.sample_rate),),
                ),
            )
