"""The smoke proof: load the model with transformers and run checks that fail on the bug and pass on the fix.

Imports torch and transformers inside functions only (elsewhere only `doctor`, for the GPU facts, and the
pickle-rewriting fix in edits.py import torch; `check` never does). Nothing is downloaded
(local_files_only, HF_HUB_OFFLINE) and no remote code runs unless trust_remote_code is asked for.

Checks, each a small function returning a Check:
- load: tokenizer and model load, the generation config is a GenerationConfig;
- highest-id: the highest tokenizer id goes through a forward pass;
- batch-consistency: a prompt generated alone equals the same prompt left-padded in a batch, with the
  mask inferred by transformers (as code that passes no attention_mask gets it) or passed explicitly;
- eos-stops: forcing the tokenizer's eos stops generation, and finished rows are padded with the pad id;
- attention: the configured attention implementation is the one that runs; sdpa and eager give the same
  greedy tokens; both timed (CUDA synchronised before timers are read);
- warnings: transformers logs none of the warnings ttsdoctor's rules predict.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

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


@dataclass
class Check:
    name: str
    passed: bool | None  # None: skipped
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class SmokeReport:
    path: str
    device: str
    dtype: str
    versions: dict[str, str]
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ids: dict[str, Any] = field(default_factory=dict)  # the special ids the checks used, and where from

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def ensure_available() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise SmokeUnavailable(f"{SMOKE_EXTRA_HINT} ({exc.name} is not installed)") from None


def choose_device(requested: str = "auto") -> tuple[str, Any]:
    """(device, dtype): CUDA when available (bf16 where supported, else fp16), CPU in float32."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise SmokeUnavailable("--device cuda was asked for, but torch sees no CUDA device")
    device = "cuda" if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()) else "cpu"
    if device == "cuda":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


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
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


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


@dataclass(frozen=True)
class Ids:
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


def run_smoke(
    path: str,
    device: str = "auto",
    trust_remote_code: bool = False,
    max_new_tokens: int = 8,
    explicit_mask: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SmokeReport:
    ensure_available()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    say = progress or (lambda _message: None)
    dev, dtype = choose_device(device)
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
                    .to(dev)  # type: ignore[arg-type]
                    .eval(),
                ),
            )
        except Exception as exc:  # any loading failure is the finding
            report.checks.append(Check("load", False, f"{type(exc).__name__}: {str(exc)[:300]}"))
            return report
        gen_ok = isinstance(model.generation_config, GenerationConfig)
        report.checks.append(
            Check(
                "load",
                gen_ok,
                f"{type(model).__name__} on {dev} ({report.dtype}), generation "
                f"config is a {type(model.generation_config).__name__}",
                seconds,
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
        for name, check in (
            ("highest-id", _check_highest_id),
            ("batch-consistency", _check_batch),
            ("eos-stops", _check_eos),
            ("attention", _check_attention),
        ):
            say(f"running {name}")
            before = len(capture.messages)
            started_check = time.perf_counter()
            try:
                result, seconds = _timed(
                    dev, functools.partial(check, model, tokenizer, dev, max_new_tokens, explicit_mask, ids)
                )
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


def _check_highest_id(model: Any, tokenizer: Any, dev: str, _new: int, _mask: bool, _ids: Ids) -> Check:
    import torch

    vocab = tokenizer.get_vocab()
    highest = max(vocab.values())
    rows = model.get_input_embeddings().weight.shape[0]
    ids = torch.tensor([[highest]], device=dev)
    try:
        with torch.no_grad():
            _, seconds = _timed(dev, lambda: model(input_ids=ids))
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
        seconds,
        {"id": highest, "rows": rows},
    )


def _generate(model: Any, **kwargs: Any) -> Any:
    import torch

    with torch.no_grad():
        return model.generate(do_sample=False, num_beams=1, **kwargs)


def _check_batch(model: Any, tokenizer: Any, dev: str, new: int, explicit_mask: bool, ids: Ids) -> Check:
    """A prompt left-padded in a batch (padded with the tokenizer's pad, as `tokenizer(..., padding=True)` and
    collators do) generates what it generates alone: with generate()'s own ids (nothing passed, as most code
    does), and, when the tokenizer's pad differs, also with the tokenizer's pad passed explicitly."""
    import torch

    fill = ids.tokenizer_pad if ids.tokenizer_pad is not None else ids.pad
    if fill is None:
        return Check("batch-consistency", None, "no pad token anywhere: batches cannot be padded")
    short = _prompt_ids(tokenizer, PROMPTS[1])
    long = _prompt_ids(tokenizer, PROMPTS[0])
    width = max(len(short), len(long))
    batch = torch.tensor([[fill] * (width - len(short)) + short, [fill] * (width - len(long)) + long], device=dev)
    mask = torch.tensor(
        [[0] * (width - len(short)) + [1] * len(short), [0] * (width - len(long)) + [1] * len(long)], device=dev
    )
    alone = _generate(model, input_ids=torch.tensor([short], device=dev), max_new_tokens=new)[0, len(short) :].tolist()
    how = "with an explicit attention_mask" if explicit_mask else "with the mask transformers infers (none passed)"
    extra = {"attention_mask": mask} if explicit_mask else {}
    runs: list[tuple[str, dict[str, Any]]] = [(f"generate()'s own ids (pad {_described(ids.pad, ids.pad_from)})", {})]
    if ids.tokenizer_pad is not None and ids.tokenizer_pad != ids.pad:
        runs.append((f"pad_token_id={ids.tokenizer_pad} from the tokenizer", {"pad_token_id": ids.tokenizer_pad}))
    results = []
    for label, kwargs in runs:
        padded = _generate(model, input_ids=batch, max_new_tokens=new, **extra, **kwargs)[0, width:].tolist()
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


def _prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """The prompt's ids; a tokenizer that encodes it to nothing (a class swapped by model_type) is the check's
    failure, said in words, never an indexing error deeper down."""
    ids = tokenizer(text).input_ids
    if not ids:
        raise SmokeCheckError(
            f"the tokenizer {type(tokenizer).__name__} encodes {text!r} to no ids at all: AutoTokenizer built a class "
            "that does not match the saved tokenizer.json (check tokenizer_class in tokenizer_config.json)"
        )
    return list(ids)


class SmokeCheckError(Exception):
    """A check that cannot run its probe on this model: its message is the check's failure detail."""


def _check_eos(model: Any, tokenizer: Any, dev: str, new: int, _mask: bool, ids: Ids) -> Check:
    """Forcing an end token stops generate() (finished rows padded with generate()'s pad), for the eos
    generate() stops on and, when it differs, the tokenizer's eos (what the model was trained to end with)."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    candidates: list[tuple[int, str]] = []
    if ids.eos:
        candidates.append((ids.eos[0], f"eos {ids.eos[0]} ({ids.eos_from})"))
    if ids.tokenizer_eos is not None and ids.tokenizer_eos not in [c for c, _ in candidates]:
        candidates.append((ids.tokenizer_eos, f"the tokenizer's eos {ids.tokenizer_eos}"))
    if not candidates:
        return Check("eos-stops", None, "no eos token in the generation config or the tokenizer")
    prompt = torch.tensor([_prompt_ids(tokenizer, PROMPTS[0])], device=dev)
    batch = torch.cat([prompt, prompt], dim=0)
    steps = max(new, 4)
    results = []

    class ForceEos(LogitsProcessor):
        """Row 0 emits the forced token at its second new token; neither row emits it otherwise."""

        def __init__(self, token: int):
            self.token = token

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            step = input_ids.shape[1] - prompt.shape[1]
            scores[:, self.token] = -float("inf")
            if step == 1:
                scores[0, :] = -float("inf")
                scores[0, self.token] = 0.0
            return scores

    for forced, label in candidates:
        out = _generate(
            model,
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


def _check_attention(model: Any, tokenizer: Any, dev: str, new: int, _mask: bool, _ids: Ids) -> Check:
    import torch

    configured = model.config._attn_implementation
    ids = torch.tensor([_prompt_ids(tokenizer, PROMPTS[0])], device=dev)
    mask = torch.ones_like(ids)
    runs: dict[str, tuple[list[int], float]] = {}
    for implementation in ("sdpa", "eager"):
        try:
            model.set_attn_implementation(implementation)
        except (ValueError, ImportError, AttributeError) as exc:
            return Check("attention", None, f"cannot switch to {implementation}: {exc}")
        _generate(model, input_ids=ids, attention_mask=mask, max_new_tokens=2)  # warm-up
        out, seconds = _timed(dev, lambda: _generate(model, input_ids=ids, attention_mask=mask, max_new_tokens=new))
        runs[implementation] = (out[0, ids.shape[1] :].tolist(), seconds)
        _release(dev)
    model.set_attn_implementation(configured)
    ratio = runs["eager"][1] / runs["sdpa"][1] if runs["sdpa"][1] > 0 else float("nan")
    data = {
        "configured": configured,
        "sdpa_seconds": runs["sdpa"][1],
        "eager_seconds": runs["eager"][1],
        "eager_over_sdpa": ratio,
        "sdpa_tokens": runs["sdpa"][0],
        "eager_tokens": runs["eager"][0],
    }
    timing = f"sdpa {runs['sdpa'][1] * 1000:.1f} ms, eager {runs['eager'][1] * 1000:.1f} ms (eager/sdpa {ratio:.2f}x)"
    if runs["sdpa"][0] != runs["eager"][0]:
        return Check("attention", False, f"sdpa and eager give different greedy tokens; {timing}", data=data)
    if configured != "sdpa":
        return Check("attention", False, f"the model runs {configured!r} attention, not sdpa; {timing}", data=data)
    return Check("attention", True, f"sdpa runs and matches eager; {timing}", data=data)


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
