"""The smoke proof: load the model with transformers and run checks that fail on the bug and pass on the fix.

Imports torch and transformers inside functions only (elsewhere only `doctor`, for the GPU facts, and the
pickle-rewriting fix in edits.py import torch; `check` never does). Nothing is downloaded
(local_files_only, HF_HUB_OFFLINE) and no remote code runs unless trust_remote_code is asked for.

Checks, each a small function of a `Subject` (the loaded model and what the checks share) returning a Check:
- load: tokenizer and model load, the generation config is a GenerationConfig, and the tokenizer AutoTokenizer
  built encodes text and special tokens as the saved tokenizer.json does (transformers may rebuild it by model_type);
- highest-id: the highest tokenizer id goes through a forward pass;
- batch-consistency: a prompt generated alone equals the same prompt left-padded in a batch, with the
  mask inferred by transformers (as code that passes no attention_mask gets it) or passed explicitly;
- eos-stops: forcing the tokenizer's eos stops generation, and finished rows are padded with the pad id;
- attention: the configured attention implementation is the one that runs; sdpa and eager give the same
  greedy tokens; both timed over repeated runs (CUDA synchronised before timers are read);
- speech-tokens / speech-stops (TTS families whose audio section is known): after the start-of-speech token, the
  model's own generation config (seeded) generates audio tokens of the family's range only, and stops by eos or
  the end-of-speech token within the budget the config allows;
- warnings: transformers logs none of the warnings ttsdoctor's rules predict.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from ttsdoctor.artifacts.model_dir import ModelDir

PREDICTED_WARNINGS = (
    "attention mask and the pad token id were not set",
    "cannot be inferred from input because pad token is same as eos token",
    "Setting `pad_token_id` to `eos_token_id`",
    "does not support `output_attentions=True`",
    "generation flags are not valid and may be ignored",
    "Falling back to the manual attention implementation",
)
PROMPTS = ("Hello there, this is a test.", "Hi")
SMOKE_EXTRA_HINT = "ttsdoctor smoke needs torch and transformers: pip install 'ttsdoctor[smoke]'"


class SmokeUnavailable(Exception):
    pass


class Check(msgspec.Struct):
    name: str
    passed: bool | None  # None: skipped
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = {}


class SmokeReport(msgspec.Struct):
    path: str
    device: str
    dtype: str
    versions: dict[str, str]
    checks: list[Check] = []
    warnings: list[str] = []
    seconds: float = 0.0
    ids: dict[str, Any] = {}  # the special ids the checks used, and where from

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        data = msgspec.structs.asdict(self)
        data["checks"] = [msgspec.structs.asdict(c) for c in self.checks]
        data["passed"] = self.passed
        return data


def ensure_available() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise SmokeUnavailable(f"{SMOKE_EXTRA_HINT} ({exc.name} is not installed)") from None


def choose_device(requested: str = "auto", float16_overflows: bool = False) -> tuple[str, Any]:
    """(device, dtype): CUDA when available (bf16 where supported, else fp16, or fp32 for a family whose activations
    overflow fp16: ENV003), CPU in float32."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise SmokeUnavailable("--device cuda was asked for, but torch sees no CUDA device")
    device = "cuda" if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()) else "cpu"
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return device, torch.bfloat16
        return device, torch.float32 if float16_overflows else torch.float16
    return device, torch.float32


def float16_overflow(folder: ModelDir | None) -> str:
    """Why the folder's family cannot run in float16 (data/codecs.json), "" when it can or is not known."""
    from ttsdoctor.codecs import serving_facts

    family = folder.family if folder is not None else None
    facts = serving_facts(family.name) if family is not None else None
    return f"{facts.family}: {facts.float16_overflows}" if facts is not None and facts.float16_overflows else ""


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    _synchronize(device)
    start = time.perf_counter()
    value = fn()
    _synchronize(device)  # CUDA kernels are asynchronous: read the timer only after they finish
    return value, time.perf_counter() - start


def _release(device: str) -> None:
    """Frees what a check left behind before the next one runs. On CUDA that is a full collection (a tensor held by
    a reference cycle keeps its device memory) and the allocator's cache; on CPU the young generations hold what a
    check made, and a full collection of a heap holding torch and transformers costs ~0.3 s per check."""
    if device == "cuda":
        import torch

        gc.collect()
        torch.cuda.empty_cache()
    else:
        gc.collect(1)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _clear_warning_once() -> None:
    from transformers.utils import logging as tlogging

    cache_clear = getattr(tlogging.warning_once, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()  # otherwise a warning seen in an earlier run is never logged again


class Ids(msgspec.Struct, frozen=True):
    """The special ids a check uses, and where each came from (said in the check's detail)."""

    pad: int | None  # what generate() pads finished rows with and infers the mask from
    pad_from: str
    eos: tuple[int, ...]  # the ids generate() stops on
    eos_from: str
    tokenizer_pad: int | None  # what the tokenizer (a collator, padding=True) pads prompts with
    tokenizer_eos: int | None


def generation_ids(model: Any, tokenizer: Any, path: str) -> Ids:
    """The ids generate() itself uses when the calling code passes none: the model's generation config (read from
    generation_config.json, or built from config.json when there is none), with transformers' own fallback of
    pad to the first eos; then the tokenizer's, which code that pads with the tokenizer uses."""
    gen = model.generation_config
    source = "generation_config.json" if os.path.isfile(os.path.join(path, "generation_config.json")) else "config.json"
    raw_eos = gen.eos_token_id
    eos = tuple(raw_eos) if isinstance(raw_eos, (list, tuple)) else (() if raw_eos is None else (raw_eos,))
    pad, pad_from = gen.pad_token_id, source
    if pad is None and eos:
        pad, pad_from = eos[0], f"no pad in {source}: generate() falls back to eos"
    return Ids(pad, pad_from, eos, source, tokenizer.pad_token_id, tokenizer.eos_token_id)


def _described(token: int | None, where: str) -> str:
    return f"{token} ({where})" if token is not None else f"none ({where})"


class Subject(msgspec.Struct):
    """What every check works on: the loaded model and tokenizer, the options, generate()'s own ids, the saved
    tokenizer.json read by the tokenizers library (what AutoTokenizer should have built), and the speech layout."""

    model: Any
    tokenizer: Any
    dev: str
    new: int  # new tokens per probe generation
    explicit_mask: bool
    ids: Ids
    saved: Any = None  # tokenizers.Tokenizer of tokenizer.json, None without one
    speech: SpeechLayout | None = None
    speech_skip: str = ""  # why there is no speech layout
    max_speech_tokens: int = 256
    prompt_notes: list[str] = []
    _speech_run: SpeechRun | None = None

    def prompt(self, text: str) -> list[int]:
        """The prompt's ids. When AutoTokenizer's tokenizer encodes it to nothing (a class swapped by model_type,
        which the load check reports), the saved tokenizer.json's encoding is used, or else ordinary vocabulary
        ids, so that every other check still runs."""
        ids = list(self.tokenizer(text).input_ids)
        if ids:
            return ids
        own = list(self.saved.encode(text).ids) if self.saved is not None else []
        if own:
            self._note(f"prompt ids from tokenizer.json: {type(self.tokenizer).__name__} encodes {text!r} to nothing")
            return own
        special = set(getattr(self.tokenizer, "all_special_ids", ()))
        ordinary = sorted(i for i in self.tokenizer.get_vocab().values() if i not in special)[:8]
        if not ordinary:
            raise SmokeCheckError(f"the tokenizer {type(self.tokenizer).__name__} has no ordinary token to prompt with")
        self._note(f"prompt built from vocabulary ids {ordinary}: the tokenizer encodes {text!r} to nothing")
        return ordinary

    def _note(self, note: str) -> None:
        if note not in self.prompt_notes:
            self.prompt_notes.append(note)


def run_smoke(
    path: str,
    device: str = "auto",
    trust_remote_code: bool = False,
    max_new_tokens: int = 8,
    explicit_mask: bool = False,
    progress: Callable[[str], None] | None = None,
    max_speech_tokens: int = 256,
) -> SmokeReport:
    ensure_available()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    say = progress or (lambda _message: None)
    from ttsdoctor.artifacts.model_dir import load_model_dir

    try:  # read once: the family decides the dtype, and the speech checks read its audio layout
        folder: ModelDir | None = load_model_dir(path)
        unreadable = ""
    except Exception as exc:  # the model load below fails with its own message; the speech checks say this one
        folder, unreadable = None, f"cannot read the audio layout ({type(exc).__name__}: {exc})"
    overflow = float16_overflow(folder)
    dev, dtype = choose_device(device, float16_overflows=bool(overflow))
    report = SmokeReport(
        path,
        dev,
        str(dtype).replace("torch.", ""),
        {"torch": torch.__version__, "transformers": transformers.__version__},
    )
    capture = _Capture()
    tlogger = logging.getLogger("transformers")
    tlogger.addHandler(capture)
    tlogging = transformers.utils.logging
    tlogging.disable_progress_bar()
    tlogging.disable_default_handler()  # warnings are captured and reported, not printed twice
    _clear_warning_once()
    started = time.perf_counter()
    try:
        say("loading tokenizer and model")
        try:
            (tokenizer, model), seconds = _timed(
                dev,
                lambda: (
                    AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code),
                    AutoModelForCausalLM.from_pretrained(
                        path, local_files_only=True, dtype=dtype, trust_remote_code=trust_remote_code
                    )
                    .to(dev)
                    .eval(),
                ),
            )
        except Exception as exc:  # any loading failure is the finding
            report.checks.append(Check("load", False, f"{type(exc).__name__}: {str(exc)[:300]}"))
            return report
        gen_ok = isinstance(model.generation_config, GenerationConfig)
        saved = saved_tokenizer(path)
        try:
            mismatch = tokenizer_mismatch(tokenizer, saved, getattr(model.config, "model_type", None))
        except Exception as exc:  # a tokenizer that cannot encode the sample text: said in words
            mismatch = f"{type(tokenizer).__name__} cannot encode the sample text ({type(exc).__name__}: {exc})"
        load_detail = (
            f"{type(model).__name__} on {dev} ({report.dtype}), generation "
            f"config is a {type(model.generation_config).__name__}, tokenizer {type(tokenizer).__name__}"
        )
        if dev == "cuda" and dtype == torch.float32 and overflow:
            load_detail += f"; float32, not float16, on a GPU without bfloat16 ({overflow})"
        report.checks.append(
            Check(
                "load",
                gen_ok and mismatch is None,
                f"{load_detail}: {mismatch}" if mismatch else load_detail,
                seconds,
                {"tokenizer_class": type(tokenizer).__name__, "tokenizer_mismatch": mismatch},
            )
        )
        if not gen_ok:
            return report
        ids = generation_ids(model, tokenizer, path)
        report.ids = {
            "pad": ids.pad,
            "pad_from": ids.pad_from,
            "eos": list(ids.eos),
            "eos_from": ids.eos_from,
            "tokenizer_pad": ids.tokenizer_pad,
            "tokenizer_eos": ids.tokenizer_eos,
        }
        try:
            layout, why_not = (
                (None, unreadable) if folder is None else speech_layout(folder, tokenizer.get_vocab(), ids)
            )
        except Exception as exc:  # the speech checks are skipped with the reason, the others still run
            layout, why_not = None, f"cannot read the audio layout ({type(exc).__name__}: {exc})"
        subject = Subject(
            model, tokenizer, dev, max_new_tokens, explicit_mask, ids, saved, layout, why_not, max_speech_tokens
        )
        for name, check in CHECKS:
            say(f"running {name}")
            before = len(capture.messages)
            started_check = time.perf_counter()
            notes = len(subject.prompt_notes)
            try:
                result, seconds = _timed(dev, functools.partial(check, subject))
            except SmokeCheckError as exc:
                result = Check(name, False, str(exc))
                seconds = time.perf_counter() - started_check
            except Exception as exc:  # the check's failure, with its cause in words
                cause = str(exc).splitlines()[0][:240] if str(exc) else "no message"
                result = Check(
                    name, False, f"the probe failed inside transformers/torch ({type(exc).__name__}: {cause})"
                )
                seconds = time.perf_counter() - started_check
            result.seconds = seconds  # every check reports its real duration (synchronised on CUDA)
            result.data.setdefault("warnings", capture.messages[before:])
            if subject.prompt_notes[notes:]:
                result.detail += f" ({'; '.join(subject.prompt_notes[notes:])})"
            report.checks.append(result)
            _release(dev)
        predicted = [m for m in capture.messages if any(p.lower() in m.lower() for p in PREDICTED_WARNINGS)]
        report.checks.append(
            Check(
                "warnings",
                not predicted,
                "no warning predicted by the rules" if not predicted else f"transformers warned: {predicted[0][:200]}",
                data={"predicted": predicted},
            )
        )
    finally:
        tlogger.removeHandler(capture)
        tlogging.enable_default_handler()
        report.warnings = list(dict.fromkeys(capture.messages))
        report.seconds = time.perf_counter() - started
    return report


def saved_tokenizer(path: str) -> Any:
    """The folder's tokenizer.json as the tokenizers library loads it (None without one, or when the library
    refuses it: the check rules report an unreadable tokenizer.json)."""
    from tokenizers import Tokenizer

    file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
        return None
    try:
        return Tokenizer.from_file(file)
    except Exception:
        return None


def tokenizer_mismatch(tokenizer: Any, saved: Any, model_type: str | None) -> str | None:
    """How the tokenizer AutoTokenizer built differs from the saved tokenizer.json (sample texts' ids, special
    tokens' ids), in words; None when it does not. transformers 5 replaces the saved pipeline by its own class for
    some model types (qwen2: Qwen2Tokenizer rebuilds a byte-level BPE from the vocabulary)."""
    if saved is None:
        return None
    cls = type(tokenizer).__name__
    kind = type(saved.model).__name__
    for text in PROMPTS:
        built = list(tokenizer(text).input_ids)
        own = list(saved.encode(text).ids)
        if built != own:
            why = f" (model_type {model_type!r})" if model_type else ""
            return (
                f"AutoTokenizer built {cls}{why}, which encodes {text!r} to {built[:8]} ({len(built)} ids); the saved "
                f"tokenizer.json ({kind}) encodes it to {own[:8]} ({len(own)} ids), and that file is the tokenizer "
                "saved with the model. Load it with PreTrainedTokenizerFast.from_pretrained(path), or see TOK008"
            )
    moved = []
    for token_id, added in sorted(saved.get_added_tokens_decoder().items()):
        got = tokenizer.convert_tokens_to_ids(added.content)
        if added.special and got != token_id:
            moved.append(f"{added.content} is {got} (tokenizer.json: {token_id})")
    if moved:
        return f"AutoTokenizer built {cls}, whose special token ids differ from tokenizer.json: {'; '.join(moved[:4])}"
    return None


class SpeechLayout(msgspec.Struct, frozen=True):
    """Where a TTS model's audio section starts and ends, and which ids are audio tokens in it."""

    family: str  # the family's name, or "unknown family" (layout read from the tokenizer's own tokens)
    start: int
    start_token: str
    end: int | None
    end_token: str | None
    audio: frozenset[int]
    audio_text: str  # "<|s_N|> (64 ids, 40-103)"
    tokens_per_second: float | None
    source: str

    def seconds(self, tokens: int) -> str:
        return f" = {tokens / self.tokens_per_second:.2f} s of audio" if self.tokens_per_second else ""


# Names an unknown family's start / end of the audio section go by (OuteTTS, Llasa, Orpheus-like fine-tunes).
START_NAMES = ("<|SPEECH_GENERATION_START|>", "<|speech_start|>", "<|start_of_speech|>", "<|startofspeech|>")
END_NAMES = ("<|SPEECH_GENERATION_END|>", "<|speech_end|>", "<|end_of_speech|>", "<|endofspeech|>")
_NUMBERED = re.compile(r"^(\D*?)(\d+)(\D*)$")


def speech_layout(folder: ModelDir, vocab: dict[str, int], ids: Ids) -> tuple[SpeechLayout | None, str]:
    """The audio section of a TTS model: for a known family from the registry (its start- and end-of-speech tokens
    and audio-token spelling); for an unknown one from its tokenizer (a start-of-speech token by a usual name and
    the largest run of numbered tokens). (None, why) when there is none to check."""
    from ttsdoctor.checks.codec import numbered_tokens
    from ttsdoctor.codecs import family_layout, serving_facts

    family = folder.family
    if family is not None:
        facts = serving_facts(family.name)
        spellings = family_layout(family.name).get("audio_tokens", [])
        if facts is None or facts.start_of_speech is None or not spellings:
            return None, f"{family.name}: no start-of-speech token in the registry (its audio section interleaves)"
        start = vocab.get(facts.start_of_speech)
        if start is None:
            return None, f"{family.name}: the tokenizer has no {facts.start_of_speech}"
        tok = folder.tokenizer.file if folder.tokenizer is not None else None
        if tok is None:
            return None, f"{family.name}: no tokenizer file to read its audio tokens from"
        markers = {start, *ids.eos} | ({vocab[facts.end_of_speech]} if facts.end_of_speech in vocab else set())
        audio = frozenset(
            i
            for s in spellings
            for code, i in numbered_tokens(tok, s["prefix"], s["suffix"]).items()
            if code < s["count"] and i not in markers
        )
        spelled = " / ".join(f"{s['prefix']}N{s['suffix']}" for s in spellings)
        end = facts.end_of_speech if facts.end_of_speech in vocab else None
        return _layout(family.name, start, facts.start_of_speech, end, vocab, audio, spelled, facts), ""
    start_token = next((n for n in START_NAMES if n in vocab), None)
    if start_token is None:
        return None, "no TTS family recognised and no start-of-speech token in the tokenizer"
    groups: dict[tuple[str, str], set[int]] = {}
    for token, i in vocab.items():
        match = _NUMBERED.match(token)
        if match and match.group(1).startswith("<") and match.group(3).endswith(">"):
            groups.setdefault((match.group(1), match.group(3)), set()).add(i)
    if not groups:
        return None, f"{start_token} but no numbered audio tokens in the tokenizer"
    (prefix, suffix), audio_ids = max(groups.items(), key=lambda kv: len(kv[1]))
    end_token = next((n for n in END_NAMES if n in vocab), None)
    return (
        _layout(
            "unknown family",
            vocab[start_token],
            start_token,
            end_token,
            vocab,
            frozenset(audio_ids),
            f"{prefix}N{suffix}",
            None,
        ),
        "",
    )


def _layout(
    family: str,
    start: int,
    start_token: str,
    end_token: str | None,
    vocab: dict[str, int],
    audio: frozenset[int],
    spelled: str,
    facts: Any,
) -> SpeechLayout:
    span = f"{min(audio)}-{max(audio)}" if audio else "none"
    return SpeechLayout(
        family,
        start,
        start_token,
        vocab[end_token] if end_token is not None else None,
        end_token,
        audio,
        f"{spelled} ({len(audio)} ids, {span})",
        facts.tokens_per_second if facts is not None else None,
        facts.start_of_speech_source if facts is not None else "the tokenizer's own tokens",
    )


def _check_highest_id(s: Subject) -> Check:
    import torch

    vocab = s.tokenizer.get_vocab()
    highest = max(vocab.values())
    rows = s.model.get_input_embeddings().weight.shape[0]
    ids = torch.tensor([[highest]], device=s.dev)
    try:
        with torch.no_grad():
            s.model(input_ids=ids)
    except (IndexError, RuntimeError) as exc:
        return Check(
            "highest-id",
            False,
            f"token id {highest} does not fit the embedding ({rows} rows): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            data={"id": highest, "rows": rows},
        )
    return Check(
        "highest-id",
        True,
        f"token id {highest} goes through a forward pass ({rows} embedding rows)",
        data={"id": highest, "rows": rows},
    )


def _generate(model: Any, **kwargs: Any) -> Any:
    import torch

    with torch.no_grad():
        return model.generate(do_sample=False, num_beams=1, **kwargs)


def _check_batch(s: Subject) -> Check:
    """A prompt left-padded in a batch (padded with the tokenizer's pad, as `tokenizer(..., padding=True)` and
    collators do) generates what it generates alone: with generate()'s own ids (nothing passed, as most code
    does), and, when the tokenizer's pad differs, also with the tokenizer's pad passed explicitly."""
    import torch

    ids, dev, new = s.ids, s.dev, s.new
    fill = ids.tokenizer_pad if ids.tokenizer_pad is not None else ids.pad
    if fill is None:
        return Check("batch-consistency", None, "no pad token anywhere: batches cannot be padded")
    short = s.prompt(PROMPTS[1])
    long = s.prompt(PROMPTS[0])
    width = max(len(short), len(long))
    batch = torch.tensor([[fill] * (width - len(short)) + short, [fill] * (width - len(long)) + long], device=dev)
    mask = torch.tensor(
        [[0] * (width - len(short)) + [1] * len(short), [0] * (width - len(long)) + [1] * len(long)], device=dev
    )
    alone = _generate(s.model, input_ids=torch.tensor([short], device=dev), max_new_tokens=new)[0, len(short) :]
    alone = alone.tolist()
    how = "with an explicit attention_mask" if s.explicit_mask else "with the mask transformers infers (none passed)"
    extra = {"attention_mask": mask} if s.explicit_mask else {}
    runs: list[tuple[str, dict[str, Any]]] = [(f"generate()'s own ids (pad {_described(ids.pad, ids.pad_from)})", {})]
    if ids.tokenizer_pad is not None and ids.tokenizer_pad != ids.pad:
        runs.append((f"pad_token_id={ids.tokenizer_pad} from the tokenizer", {"pad_token_id": ids.tokenizer_pad}))
    results = []
    for label, kwargs in runs:
        padded = _generate(s.model, input_ids=batch, max_new_tokens=new, **extra, **kwargs)[0, width:].tolist()
        results.append((label, padded, padded == alone))
    data = {
        "alone": alone,
        "runs": [{"ids": label, "batched": padded, "same": same} for label, padded, same in results],
        "padded_with": fill,
        "pad": ids.pad,
        "eos": list(ids.eos),
    }
    parts = []
    for label, padded, same in results:
        if same:
            parts.append(f"with {label}: the same tokens as alone")
        else:
            cause = " (pad is an eos id: transformers cannot infer the mask)" if ids.pad in ids.eos else ""
            parts.append(f"with {label}: {padded[:6]} but alone {alone[:6]}{cause}")
    passed = results[0][2]  # the verdict is what code that passes nothing gets
    detail = f"prompt left-padded with {fill}, {how}; " + "; ".join(parts)
    if passed and not all(same for _, _, same in results):
        detail += " (passing the tokenizer's pad breaks it)"
        passed = False
    return Check("batch-consistency", passed, detail, data=data)


class SmokeCheckError(Exception):
    """A check that cannot run its probe on this model: its message is the check's failure detail."""


def _check_eos(s: Subject) -> Check:
    """Forcing an end token stops generate() (finished rows padded with generate()'s pad), for the eos
    generate() stops on and, when it differs, the tokenizer's eos (what the model was trained to end with)."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    ids = s.ids
    candidates: list[tuple[int, str]] = []
    if ids.eos:
        candidates.append((ids.eos[0], f"eos {ids.eos[0]} ({ids.eos_from})"))
    if ids.tokenizer_eos is not None and ids.tokenizer_eos not in [c for c, _ in candidates]:
        candidates.append((ids.tokenizer_eos, f"the tokenizer's eos {ids.tokenizer_eos}"))
    if not candidates:
        return Check("eos-stops", None, "no eos token in the generation config or the tokenizer")
    prompt = torch.tensor([s.prompt(PROMPTS[0])], device=s.dev)
    batch = torch.cat([prompt, prompt], dim=0)
    steps = max(s.new, 4)
    results = []

    ends = sorted({c for c, _ in candidates} | set(ids.eos))

    class ForceEos(LogitsProcessor):
        """Row 0 emits the forced token at its second new token; neither row emits it, or any other end token
        (a model that would end at once of itself must not end the probe early), otherwise."""

        def __init__(self, token: int):
            self.token = token

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            step = input_ids.shape[1] - prompt.shape[1]
            scores[:, ends] = -float("inf")
            if step == 1:
                scores[0, :] = -float("inf")
                scores[0, self.token] = 0.0
            return scores

    for forced, label in candidates:
        out = _generate(
            s.model,
            input_ids=batch,
            attention_mask=torch.ones_like(batch),
            max_new_tokens=steps,
            logits_processor=LogitsProcessorList([ForceEos(forced)]),
        )
        row = out[0, prompt.shape[1] :].tolist()
        after = row[2:]
        if len(row) < 2 or row[1] != forced:
            results.append((label, False, f"{label} was forced but not emitted: {row}", row))
        elif (out.shape[1] - prompt.shape[1] < steps and not after) or (after and all(t == ids.pad for t in after)):
            results.append((label, True, f"{label} stops generation" + (f", then pad {ids.pad}" if after else ""), row))
        else:
            results.append((label, False, f"{label} does not stop generate(): row 0 went on with {after[:6]}", row))
    data = {
        "eos": list(ids.eos),
        "pad": ids.pad,
        "tokenizer_eos": ids.tokenizer_eos,
        "runs": [{"forced": label, "stopped": ok, "row": row} for label, ok, _, row in results],
    }
    passed = all(ok for _, ok, _, _ in results)
    stops_on = f"generate() stops on {list(ids.eos)} ({ids.eos_from})"
    return Check("eos-stops", passed, "; ".join(detail for _, _, detail, _ in results) + f"; {stops_on}", data=data)


ATTENTION_REPEATS = 3


def _check_attention(s: Subject) -> Check:
    """sdpa and eager give the same greedy tokens; each timed as the median of ATTENTION_REPEATS runs of
    `s.new` new tokens after a warm-up, with the device synchronised around every run."""
    import statistics

    import torch

    model = s.model
    configured = model.config._attn_implementation
    ids = torch.tensor([s.prompt(PROMPTS[0])], device=s.dev)
    mask = torch.ones_like(ids)
    runs: dict[str, tuple[list[int], float, list[float]]] = {}
    for implementation in ("sdpa", "eager"):
        try:
            model.set_attn_implementation(implementation)
        except (ValueError, ImportError, AttributeError) as exc:
            return Check("attention", None, f"cannot switch to {implementation}: {exc}")
        _generate(model, input_ids=ids, attention_mask=mask, max_new_tokens=2)  # warm-up
        times = []
        for _ in range(ATTENTION_REPEATS):
            out, seconds = _timed(  # min_new_tokens: both time the same number of tokens, even past an eos
                s.dev,
                lambda: _generate(
                    model, input_ids=ids, attention_mask=mask, max_new_tokens=s.new, min_new_tokens=s.new
                ),
            )
            times.append(seconds)
        runs[implementation] = (out[0, ids.shape[1] :].tolist(), statistics.median(times), times)
        _release(s.dev)
    model.set_attn_implementation(configured)
    sdpa, eager = runs["sdpa"][1], runs["eager"][1]
    ratio = eager / sdpa if sdpa > 0 else float("nan")
    tokens = len(runs["sdpa"][0])
    data = {
        "configured": configured,
        "sdpa_seconds": sdpa,
        "eager_seconds": eager,
        "eager_over_sdpa": ratio,
        "sdpa_runs": runs["sdpa"][2],
        "eager_runs": runs["eager"][2],
        "new_tokens": tokens,
        "prompt_tokens": ids.shape[1],
        "repeats": ATTENTION_REPEATS,
        "sdpa_tokens": runs["sdpa"][0],
        "eager_tokens": runs["eager"][0],
    }
    timing = (
        f"sdpa {sdpa * 1000:.1f} ms, eager {eager * 1000:.1f} ms (eager/sdpa {ratio:.2f}x; median of "
        f"{ATTENTION_REPEATS} runs of {tokens} new tokens after a {ids.shape[1]}-token prompt, on {s.dev})"
    )
    if runs["sdpa"][0] != runs["eager"][0]:
        return Check("attention", False, f"sdpa and eager give different greedy tokens; {timing}", data=data)
    if configured != "sdpa":
        return Check("attention", False, f"the model runs {configured!r} attention, not sdpa; {timing}", data=data)
    return Check("attention", True, f"sdpa runs and matches eager; {timing}", data=data)


class SpeechRun(msgspec.Struct):
    prompt: list[int]
    new: list[int]  # the generated ids
    ran: int  # max_new_tokens given to generate()
    budget: int  # what the model's generation config allows
    budget_from: str
    stop_at: int | None  # index in `new` of the first eos / end-of-speech id
    seconds: float


def _speech_run(s: Subject) -> SpeechRun:
    """One seeded generation with the model's own generation config, from the prompt plus the start-of-speech
    token, for at most the config's budget (capped at `max_speech_tokens`). Shared by the two speech checks."""
    if s._speech_run is not None:
        return s._speech_run
    import torch

    from ttsdoctor.checks.serving import TRANSFORMERS_DEFAULT_NEW_TOKENS

    assert s.speech is not None
    prompt = [*s.prompt(PROMPTS[0]), s.speech.start]
    gen = s.model.generation_config
    if gen.max_new_tokens:
        budget, budget_from = int(gen.max_new_tokens), f"max_new_tokens {gen.max_new_tokens} ({s.ids.eos_from})"
    elif gen.max_length:
        budget = max(int(gen.max_length) - len(prompt), 0)
        budget_from = f"max_length {gen.max_length} ({s.ids.eos_from}) less the {len(prompt)}-token prompt"
    else:
        budget, budget_from = TRANSFORMERS_DEFAULT_NEW_TOKENS, "transformers' default when no budget is set"
    ran = min(budget, s.max_speech_tokens)
    ids = torch.tensor([prompt], device=s.dev)
    torch.manual_seed(0)  # seeds every device: sampling configs give the same tokens run after run
    with torch.no_grad():
        out, seconds = _timed(
            s.dev,
            lambda: s.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max(ran, 1)),
        )
    new = out[0, len(prompt) :].tolist()
    stops = set(s.ids.eos) | ({s.speech.end} if s.speech.end is not None else set())
    stop_at = next((i for i, t in enumerate(new) if t in stops), None)
    s._speech_run = SpeechRun(prompt, new, ran, budget, budget_from, stop_at, seconds)
    return s._speech_run


def _token_text(s: Subject, token: int) -> str:
    return f"{s.tokenizer.convert_ids_to_tokens(token)!r} ({token})"


def _check_speech_tokens(s: Subject) -> Check:
    if s.speech is None:
        return Check("speech-tokens", None, f"not a TTS model with a known audio section: {s.speech_skip}")
    run, layout = _speech_run(s), s.speech
    body = run.new[: run.stop_at] if run.stop_at is not None else run.new
    strays = [(i, t) for i, t in enumerate(body) if t not in layout.audio]
    data = {
        "family": layout.family,
        "start": layout.start,
        "generated": run.new[:64],
        "audio_tokens": len(body) - len(strays),
        "other_tokens": [t for _, t in strays][:16],
        "source": layout.source,
    }
    head = (
        f"{layout.family}: after {layout.start_token} ({layout.start}), with the model's own generation config (seed 0)"
    )
    if not body:
        return Check("speech-tokens", False, f"{head}, the model ends at once: no audio token at all", data=data)
    if strays:
        shown = ", ".join(f"#{i} {_token_text(s, t)}" for i, t in strays[:3])
        return Check(
            "speech-tokens",
            False,
            f"{head}, {len(strays)} of {len(body)} generated tokens are not audio tokens {layout.audio_text}: {shown}",
            data=data,
        )
    return Check(
        "speech-tokens",
        True,
        f"{head}, all {len(body)} generated tokens are audio tokens {layout.audio_text}",
        data=data,
    )


def _check_speech_stops(s: Subject) -> Check:
    if s.speech is None:
        return Check("speech-stops", None, f"not a TTS model with a known audio section: {s.speech_skip}")
    run, layout = _speech_run(s), s.speech
    data = {
        "budget": run.budget,
        "budget_from": run.budget_from,
        "ran": run.ran,
        "generated": len(run.new),
        "stop_at": run.stop_at,
        "eos": list(s.ids.eos),
        "end_of_speech": layout.end,
        "tokens_per_second": layout.tokens_per_second,
        "generation_seconds": run.seconds,
    }
    budget = f"the budget of {run.budget} tokens{layout.seconds(run.budget)} ({run.budget_from})"
    stops_on = f"generate() stops on {list(s.ids.eos)} ({s.ids.eos_from})"
    if run.stop_at is not None:
        token = run.new[run.stop_at]
        after = run.new[run.stop_at + 1 :]
        said = f"{_token_text(s, token)} after {run.stop_at} audio tokens{layout.seconds(run.stop_at)}"
        if after and any(t != s.ids.pad for t in after):
            return Check(
                "speech-stops",
                False,
                f"the model emitted {said}, but generate() went on for {len(after)} more tokens: {stops_on}, "
                f"without the end-of-speech id {layout.end}",
                data=data,
            )
        return Check("speech-stops", True, f"stopped by {said}, within {budget}", data=data)
    ran = f"{run.ran} tokens{layout.seconds(run.ran)}"
    ending = f"{layout.end_token} ({layout.end}) or eos {list(s.ids.eos)}" if layout.end is not None else "eos"
    if run.ran < run.budget:
        return Check(
            "speech-stops",
            None,
            f"no {ending} within the {ran} run (--max-speech-tokens); the config allows {budget}: inconclusive",
            data=data,
        )
    return Check("speech-stops", False, f"ran out of budget: {ran} generated without {ending}; {budget}", data=data)


CHECKS: tuple[tuple[str, Callable[[Subject], Check]], ...] = (
    ("highest-id", _check_highest_id),
    ("batch-consistency", _check_batch),
    ("eos-stops", _check_eos),
    ("attention", _check_attention),
    ("speech-tokens", _check_speech_tokens),
    ("speech-stops", _check_speech_stops),
)


# Which checks can show each finding's problem: a finding is demonstrated when one of its checks fails before
# the fix, and proven fixed when that check passes after it.
DEMONSTRATED_BY: dict[str, tuple[str, ...]] = {
    "TOK001": ("batch-consistency", "eos-stops"),
    "TOK002": ("batch-consistency", "eos-stops"),
    "TOK003": ("highest-id", "eos-stops"),
    "TOK004": ("eos-stops", "batch-consistency"),
    "TOK005": ("eos-stops", "batch-consistency"),
    "TOK006": ("batch-consistency",),
    "VOC001": ("highest-id",),
    "VOC002": ("highest-id",),
    "VOC003": ("highest-id",),
    "GEN001": ("load",),
    "GEN003": ("warnings",),
    "GEN004": ("warnings", "load"),
    "ATT001": ("attention", "warnings"),
    "ATT002": ("attention",),
    "SRV001": ("speech-stops",),
    "SRV002": ("speech-stops",),
    "TOK008": ("load",),
}
PROVEN, NOT_DEMONSTRATED, STILL_FAILING, NOT_PROVABLE = (
    "proven",
    "not demonstrated by the smoke run",
    "still failing after the fix",
    "not something the smoke run can show",
)


def demonstrated(rule_id: str, report: SmokeReport) -> list[Check]:
    """The checks of `report` that failed in a way the finding of `rule_id` predicts."""
    checks = [report.check(name) for name in DEMONSTRATED_BY.get(rule_id, ())]
    return [c for c in checks if c is not None and c.passed is False]


def verdict(rule_id: str, before: SmokeReport, after: SmokeReport) -> tuple[str, list[str]]:
    """What the smoke run says of a fixed finding: proven (a check failed before and passes after), not
    demonstrated (its checks passed before too: the fix may be right, the proof cannot say), still failing,
    or not provable by these checks. With the names of the checks behind the verdict."""
    names = DEMONSTRATED_BY.get(rule_id, ())
    if not names:
        return NOT_PROVABLE, []
    failed_before = [c.name for c in demonstrated(rule_id, before)]
    failed_after = [c.name for c in demonstrated(rule_id, after)]
    if failed_after:
        return STILL_FAILING, failed_after
    if failed_before:
        return PROVEN, failed_before
    return NOT_DEMONSTRATED, list(names)


def regressions(before: SmokeReport, after: SmokeReport) -> list[str]:
    """The checks that passed (or were skipped) before a fix and fail after it: what the fix broke."""
    return [
        c.name
        for c in after.checks
        if c.passed is False and (b := before.check(c.name)) is not None and b.passed is not False
    ]


def format_report(report: SmokeReport, other: SmokeReport | None = None) -> str:
    """Text report; with `other` (the 'after' run) the two side by side."""

    def mark(check: Check | None) -> str:
        if check is None:
            return "-"
        return {True: "pass", False: "FAIL", None: "skip"}[check.passed]

    lines = [
        f"smoke proof of {report.path} on {report.device} ({report.dtype}), torch "
        f"{report.versions['torch']}, transformers {report.versions['transformers']}"
    ]
    if other is None:
        for check in report.checks:
            lines.append(f"  {mark(check):4}  {check.name:18} {check.detail}")
        lines.append(f"{'passed' if report.passed else 'FAILED'} in {report.seconds:.1f} s")
        return "\n".join(lines) + "\n"
    lines.append(f"  {'check':18} {'before':6} {'after':6}  after")
    names = list(dict.fromkeys([c.name for c in report.checks] + [c.name for c in other.checks]))
    for name in names:
        after = other.check(name)
        lines.append(f"  {name:18} {mark(report.check(name)):6} {mark(after):6}  {after.detail if after else ''}")
    lines.append(f"before: {'passed' if report.passed else 'FAILED'}, after: {'passed' if other.passed else 'FAILED'}")
    return "\n".join(lines) + "\n"
