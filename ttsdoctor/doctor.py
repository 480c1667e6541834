"""`ttsdoctor doctor`: the environment, the way `flutter doctor` reports it."""

from __future__ import annotations

import importlib.util
import platform

import msgspec

from ttsdoctor.environment import installed_version

OK, WARN, FAIL, OPTIONAL = "ok", "warning", "problem", "optional"
MARKS = {OK: "[✓]", WARN: "[!]", FAIL: "[✗]", OPTIONAL: "[-]"}


class Item(msgspec.Struct):
    name: str
    status: str
    detail: str
    advice: str = ""


def _version_item(dist: str, required: bool, purpose: str, hint: str) -> Item:
    version = installed_version(dist)
    if version is None:
        return Item(dist, FAIL if required else OPTIONAL, f"not installed ({purpose})", hint)
    return Item(dist, OK, f"{version} ({purpose})")


def diagnose() -> list[Item]:
    items = [
        Item("Python", OK, f"{platform.python_version()} ({platform.python_implementation()}, {platform.machine()})")
    ]
    for dist, required, purpose in (
        ("tokenizers", True, "tokenizer ids"),
        ("safetensors", True, "the format's reference library (ttsdoctor parses headers itself)"),
        ("textual", True, "the TUI"),
    ):
        items.append(_version_item(dist, required, purpose, f"pip install {dist}"))
    smoke_hint = "pip install 'ttsdoctor[smoke]' (install torch first: pip install torch)"
    items.append(_version_item("transformers", False, "smoke proof, transformers-specific messages", smoke_hint))
    torch_item = _version_item("torch", False, "smoke proof", smoke_hint)
    items.append(torch_item)
    if torch_item.status != OK:
        return items
    import torch  # only here: doctor is allowed to be slow

    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            name = torch.cuda.get_device_name(index)
            major, minor = torch.cuda.get_device_capability(index)
            bf16 = torch.cuda.is_bf16_supported()
            items.append(
                Item(
                    f"CUDA device {index}",
                    OK if bf16 else WARN,
                    f"{name}, compute capability {major}.{minor}, bf16 {'yes' if bf16 else 'no'}",
                    "" if bf16 else "load bf16 checkpoints with dtype=torch.float16 on this GPU",
                )
            )
    else:
        items.append(
            Item(
                "CUDA",
                WARN,
                f"not available to torch {torch.__version__}: smoke proofs run on the CPU",
                "install a CUDA build of torch on a machine with an NVIDIA GPU to prove on GPU",
            )
        )
    sdpa = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    items.append(
        Item(
            "attention: sdpa",
            OK if sdpa else FAIL,
            "torch.nn.functional.scaled_dot_product_attention available" if sdpa else "missing",
            "" if sdpa else "upgrade torch to 2.0 or newer",
        )
    )
    flash = importlib.util.find_spec("flash_attn") is not None
    if flash and torch.cuda.is_available():
        items.append(Item("attention: flash_attention_2", OK, f"flash-attn {installed_version('flash-attn')}"))
    else:
        items.append(
            Item(
                "attention: flash_attention_2",
                OPTIONAL,
                "flash-attn installed but no CUDA" if flash else "flash-attn not installed",
                "pip install flash-attn on a CUDA machine (optional: sdpa is the default)",
            )
        )
    return items


def format_items(items: list[Item]) -> str:
    lines = []
    for item in items:
        lines.append(f"{MARKS[item.status]} {item.name}: {item.detail}")
        if item.advice and item.status != OK:
            lines.append(f"    -> {item.advice}")
    problems = sum(1 for i in items if i.status == FAIL)
    warnings = sum(1 for i in items if i.status == WARN)
    lines.append(
        "No issues found." if not problems and not warnings else f"{problems} problem(s), {warnings} warning(s)."
    )
    return "\n".join(lines) + "\n"


def as_json(items: list[Item]) -> list[dict[str, str]]:
    return [msgspec.structs.asdict(i) for i in items]
