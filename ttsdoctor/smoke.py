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


def _ids(tokenizer: Any) -> tuple[int | None, int | None]:
    return tokenizer.pad_token_id, tokenizer.eos_token_id


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
                    dev, functools.partial(check, model, tokenizer, dev, max_new_tokens, explicit_mask)
                )
            except Exception as exc:
                result = Check(name, False, f"{type(exc).__name__}: {str(exc)[:300]}")
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


def _check_highest_id(model: Any, tokenizer: Any, dev: str, _new: int, _mask: bool) -> Check:
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


def _check_batch(model: Any, tokenizer: Any, dev: str, new: int, explicit_mask: bool) -> Check:
    import torch

    pad_id, eos_id = _ids(tokenizer)
    pad = pad_id if pad_id is not None else model.generation_config.pad_token_id
    if pad is None:
        return Check("batch-consistency", None, "no pad token: batches cannot be padded")
    short = tokenizer(PROMPTS[1], return_tensors="pt").input_ids[0].tolist()
    long = tokenizer(PROMPTS[0], return_tensors="pt").input_ids[0].tolist()
    width = max(len(short), len(long))
    batch = torch.tensor([[pad] * (width - len(short)) + short, [pad] * (width - len(long)) + long], device=dev)
    mask = torch.tensor(
        [[0] * (width - len(short)) + [1] * len(short), [0] * (width - len(long)) + [1] * len(long)], device=dev
    )
    common = {"max_new_tokens": new, "pad_token_id": pad}
    alone = _generate(model, input_ids=torch.tensor([short], device=dev), **common)[0, len(short) :].tolist()
    if explicit_mask:
        batched = _generate(model, input_ids=batch, attention_mask=mask, **common)
        how = "with an explicit attention_mask"
    else:
        batched = _generate(model, input_ids=batch, **common)
        how = "with the mask transformers infers (no attention_mask passed)"
    padded = batched[0, width:].tolist()
    data = {"alone": alone, "batched": padded, "pad": pad, "eos": eos_id}
    if alone == padded:
        return Check(
            "batch-consistency", True, f"the padded prompt generates the same tokens as alone, {how}", data=data
        )
    cause = " (pad == eos: transformers cannot infer the mask)" if pad == eos_id else ""
    return Check(
        "batch-consistency",
        False,
        f"the left-padded prompt generates {padded[:6]} but alone {alone[:6]}, {how}{cause}",
        data=data,
    )


def _check_eos(model: Any, tokenizer: Any, dev: str, new: int, _mask: bool) -> Check:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    eos = tokenizer.eos_token_id
    if eos is None:
        return Check("eos-stops", None, "the tokenizer declares no eos token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.generation_config.pad_token_id

    class ForceEos(LogitsProcessor):
        """Row 0 emits eos at its second new token; row 1 never does."""

        def __init__(self, prompt_length: int):
            self.prompt_length = prompt_length

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            step = input_ids.shape[1] - self.prompt_length
            scores[:, eos] = -float("inf")
            if step == 1:
                scores[0, :] = -float("inf")
                scores[0, eos] = 0.0
            return scores

    ids = tokenizer(PROMPTS[0], return_tensors="pt").input_ids.to(dev)
    batch = torch.cat([ids, ids], dim=0)
    steps = max(new, 4)
    out = _generate(
        model,
        input_ids=batch,
        attention_mask=torch.ones_like(batch),
        max_new_tokens=steps,
        logits_processor=LogitsProcessorList([ForceEos(ids.shape[1])]),
        **({"pad_token_id": pad} if pad is not None else {}),
    )
    row = out[0, ids.shape[1] :].tolist()
    data = {"row": row, "eos": eos, "pad": pad, "generation_eos": model.generation_config.eos_token_id}
    if len(row) < 2 or row[1] != eos:
        return Check("eos-stops", False, f"eos {eos} was forced but not emitted: {row}", data=data)
    after = row[2:]
    if out.shape[1] - ids.shape[1] < steps and not after:
        return Check("eos-stops", True, "forcing eos stopped generation", data=data)
    if after and all(t == pad for t in after) and out.shape[1] - ids.shape[1] <= steps:
        return Check(
            "eos-stops", True, f"forcing eos {eos} stopped row 0, whose remaining positions hold pad {pad}", data=data
        )
    return Check(
        "eos-stops",
        False,
        f"the tokenizer's eos {eos} did not stop generation (generation_config "
        f"eos_token_id is {model.generation_config.eos_token_id!r}): row 0 went on with {after[:6]}",
        data=data,
    )


def _check_attention(model: Any, tokenizer: Any, dev: str, new: int, _mask: bool) -> Check:
    import torch

    configured = model.config._attn_implementation
    ids = tokenizer(PROMPTS[0], return_tensors="pt").input_ids.to(dev)
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
