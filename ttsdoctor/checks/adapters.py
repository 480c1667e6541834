"""ADP: PEFT adapters and merged folders: new-token rows the adapter never trains, adapters that change nothing,
sizes an adapter cannot be loaded with, and a quantization config left on full-precision merged weights; in
training scripts, a LoRA set-up that leaves the rows of the tokens the script adds untrained.

An adapter folder is read as PEFT writes it (artifacts/adapter.py): adapter_config.json, the tensors of
adapter_model.safetensors (headers; rows and LoRA matrices are read only where a rule measures them) and the
config.json of its base when the base is on this machine. Nothing is downloaded.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

from ttsdoctor.artifacts.adapter import EMBEDDING_MODULES, HEAD_MODULES, Adapter, module_of, saved_rows
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.tensors import TensorInfo
from ttsdoctor.checks import pysource
from ttsdoctor.finding import Applicability, Finding, Fix, RemoveJsonKey, ReplaceSource, Severity
from ttsdoctor.rule import Rule

# Rows closer to their own mean than this (relative to the trained rows' median norm) were never trained: rows
# resized in by transformers are the old rows' mean plus noise of 1e-9 of their covariance (~3e-5 apart).
UNTRAINED_SPREAD = 1e-3
LAST_IDS = 64
# Module paths a target_modules regex is matched against (PEFT: re.fullmatch on the module's full name)
_EMBEDDING_PATHS = ("model.embed_tokens", "transformer.wte", "gpt_neox.embed_in", "model.language_model.embed_tokens")
_HEAD_PATHS = ("lm_head", "embed_out")
# Source: a LoRA set up in a file that adds tokens and resizes the embedding
_PEFT_TEXT = re.compile(r"\bLoraConfig\s*\(|\.get_peft_model\s*\(")
_ADD_TEXT = re.compile(r"\.add_tokens\s*\(|additional_special_tokens")
_HAND_TRAINED = re.compile(r"(get_input_embeddings|get_output_embeddings|embed_tokens|lm_head)\W[^\n]*requires_grad")
_SOURCE_CALLS = re.compile(r"LoraConfig|get_peft_model|resize_token_embeddings|add_tokens|add_special_tokens")
# Attention projections named as in Llama, Qwen, Mistral, Gemma, Phi: their embedding and head are
# embed_tokens and lm_head, the names the fix writes
_LLAMA_STYLE = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
_BNB_MARKERS = (".absmax", ".quant_map", ".SCB", ".weight_format", "quant_state.bitsandbytes__")


def _listed(names: list[str], modules: tuple[str, ...]) -> bool:
    """Whether a modules_to_save / target_modules list names one of these modules (PEFT matches a name against
    the end of a module's path)."""
    return any(name.rsplit(".", 1)[-1] in modules for name in names)


def _matches(pattern: str, paths: tuple[str, ...]) -> bool:
    try:
        return any(re.fullmatch(pattern, path) for path in paths)
    except re.error:
        return False


def _targets(target: str | list[str], modules: tuple[str, ...], paths: tuple[str, ...]) -> bool:
    """Whether target_modules (a list of names, or "all-linear" / a regex PEFT fullmatches against a module's path)
    puts LoRA on one of these modules."""
    if isinstance(target, str):
        return target != "all-linear" and _matches(target, paths)
    return _listed(target, modules)


def _trains(adapter: Adapter, modules: tuple[str, ...], paths: tuple[str, ...]) -> str | None:
    """Which adapter_config.json field trains this module's rows in full, or None."""
    if _listed(adapter.names("modules_to_save"), modules):
        return "modules_to_save"
    target = adapter.data.get("target_modules")
    if _targets(target if isinstance(target, str) else adapter.names("target_modules"), modules, paths):
        return "target_modules"
    return None


def _token_indices(adapter: Adapter, modules: tuple[str, ...], input_side: bool) -> set[int]:
    """Ids trainable_token_indices trains in these modules (a list targets the input embedding)."""
    value = adapter.data.get("trainable_token_indices")
    if isinstance(value, list):
        return {i for i in value if isinstance(i, int)} if input_side else set()
    if isinstance(value, dict):
        return {
            i
            for name, ids in value.items()
            if isinstance(name, str) and name.rsplit(".", 1)[-1] in modules and isinstance(ids, list)
            for i in ids
            if isinstance(i, int)
        }
    return set()


def _pointer(adapter: Adapter, key: str) -> tuple[str, int | None, int | None]:
    pointer = "/" + key
    line, column = adapter.doc.position(pointer) if key in adapter.data else (None, None)
    return pointer, line, column


def _base_text(adapter: Adapter, rows: int) -> str:
    where = adapter.base_config.path if adapter.base_config is not None else adapter.base_dir
    return f"the base {adapter.base_name} ({where}: vocab_size {rows})"


def _ids_text(ids: list[int]) -> str:
    """'277..340' for a run of ids, else the first five."""
    if len(ids) > 1 and ids[-1] - ids[0] == len(ids) - 1:
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(map(str, ids[:5])) + (" ..." if len(ids) > 5 else "")


class NewRowsUntrained(Rule):
    id = "ADP001"
    name = "new-rows-untrained"
    summary = "Tokens added to the vocabulary whose embedding or head rows the adapter never trains"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        adapter = target.adapter
        tok = target.tokenizer.file if target.tokenizer is not None else None
        if adapter is None or tok is None:
            return
        base_rows = adapter.base_int("vocab_size")
        tied = adapter.base_tied
        sides: list[tuple[str, tuple[str, ...], tuple[str, ...], bool]] = [
            ("input embedding", EMBEDDING_MODULES, _EMBEDDING_PATHS, True),
            ("output head", HEAD_MODULES, _HEAD_PATHS, False),
        ]
        trained = {label: _trains(adapter, modules, paths) for label, modules, paths, _ in sides}
        if tied is not False and any(trained.values()):
            return  # one matrix, trained through either name (or untied unknown: the input side decides)
        for label, modules, _paths, input_side in sides:
            if trained[label] is not None or (label == "output head" and tied is not False):
                continue
            tensor = saved_rows(target.tensors, modules)
            if tensor is None or tensor.rows is None:
                continue  # no rows in the adapter: ADP004 says what the base lacks
            yield from self._side(adapter, tensor, label, modules, input_side, base_rows, tok.id_count)

    def check_source(self, source: SourceFile) -> Iterator[Finding]:
        text = source.text
        if (
            "resize_token_embeddings" not in text
            or not _PEFT_TEXT.search(text)
            or not _ADD_TEXT.search(text)
            or _HAND_TRAINED.search(text)
        ):
            return
        calls = pysource.index(source, _SOURCE_CALLS).calls
        resized = calls.get("resize_token_embeddings", [])
        added = [
            s.node for name in ("add_tokens", "add_special_tokens") for s in calls.get(name, []) if _adds_tokens(s.node)
        ]
        if not resized or not added:
            return
        sites = [*calls.get("LoraConfig", []), *calls.get("get_peft_model", [])]
        for site in sites:
            names = _lora_without_rows(site.node)
            if names is None:
                continue
            call = site.node
            fix = None
            arguments = [*call.args, *(kw.value for kw in call.keywords)]
            end = (
                pysource.span(source, max(arguments, key=lambda n: (n.end_lineno or 0, n.end_col_offset or 0)))
                if arguments
                else None
            )
            if end is not None and _LLAMA_STYLE.intersection(names):
                fix = Fix(
                    'add modules_to_save=["embed_tokens", "lm_head"] to this LoRA set-up',
                    Applicability.SAFE,
                    (ReplaceSource(source.path, end[1], end[1], ', modules_to_save=["embed_tokens", "lm_head"]'),),
                )
            what = f"target_modules={names}" if names else "no target_modules (PEFT's default attention projections)"
            yield self.finding(
                f"{site.name}() at {source.line_name(call.lineno)} trains {what} and neither modules_to_save nor "
                f"trainable_token_indices, while this file adds tokens ({source.line_name(added[0].lineno)}) and "
                f"resizes the embedding ({source.line_name(resized[0].node.lineno)}): PEFT freezes the embedding "
                "and the head, so the new tokens' rows keep the values resizing gave them",
                source.path,
                line=call.lineno,
                column=call.col_offset + 1,
                evidence={"target_modules": names},
                fix=fix,
                severity=Severity.WARNING,
            )

    def _side(
        self,
        adapter: Adapter,
        tensor: TensorInfo,
        label: str,
        modules: tuple[str, ...],
        input_side: bool,
        base_rows: int | None,
        tokenizer_rows: int,
    ) -> Iterator[Finding]:
        from ttsdoctor.artifacts.row_stats import row_spread

        assert tensor.rows is not None
        resized_by_peft = ".modules_to_save." not in tensor.name and "base_layer." not in tensor.name
        if base_rows is None and not resized_by_peft:
            return
        upper = min(tokenizer_rows, tensor.rows)
        # Without the base, where the new ids begin is unknown: only the last ids are read, and only a proof of
        # untrained rows is reported.
        first = base_rows if base_rows is not None else max(upper - LAST_IDS, 1)
        covered = _token_indices(adapter, modules, input_side)
        new_ids = [i for i in range(first, upper) if i not in covered]
        if not new_ids:
            return
        spread = row_spread(tensor, new_ids, first)
        proven = spread is not None and spread[0] < UNTRAINED_SPREAD
        if base_rows is None and not proven:
            return
        if base_rows is not None:
            where = _base_text(adapter, base_rows)
            count = f"{len(new_ids)} new ids ({_ids_text(new_ids)})"
        else:
            where = (
                f"PEFT saved {tensor.name} ({tensor.rows} rows) because the vocabulary was resized (the base "
                f"{adapter.base_name or '(unnamed)'} is not on this machine)"
            )
            count = f"at least the last {len(new_ids)} ids ({_ids_text(new_ids)})"
        if proven:
            assert spread is not None
            proof = (
                f"the {spread[1]} rows read from {tensor.name} are within {spread[0]:.1e} of their mean, the values "
                "resizing gave them: never trained, the model cannot tell these tokens apart"
            )
        else:
            proof = (
                "unless they were trained outside PEFT's config (requires_grad set by hand), they keep their "
                "initial values"
            )
        pointer, line, column = _pointer(adapter, "modules_to_save")
        yield self.finding(
            f"the tokenizer has {tokenizer_rows} ids and {where}, yet neither modules_to_save, target_modules nor "
            f"trainable_token_indices of {adapter.doc.path} trains the {label} rows of {count}: {proof}",
            adapter.doc.path,
            pointer,
            line,
            column,
            evidence={
                "side": label,
                "tokenizer_rows": tokenizer_rows,
                "base_rows": base_rows,
                "adapter_rows": tensor.rows,
                "untrained_ids": len(new_ids),
                "spread": None if spread is None else float(f"{spread[0]:.3g}"),
            },
            fix=Fix(
                f'retrain with modules_to_save=["{modules[0]}", "lm_head"] in LoraConfig (or trainable_token_indices '
                "listing the new ids): the rows of a saved adapter cannot be trained by editing its config",
                Applicability.DISPLAY_ONLY,
            ),
            severity=Severity.ERROR if proven else Severity.WARNING,
        )


def _literal_names(expr: ast.expr) -> list[str] | None:
    """A list/tuple/set of string literals, or None."""
    if isinstance(expr, (ast.List, ast.Tuple, ast.Set)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in expr.elts
    ):
        return [e.value for e in expr.elts]  # type: ignore[attr-defined]
    return None


def _adds_tokens(call: ast.Call) -> bool:
    """tokenizer.add_tokens(...), or add_special_tokens with additional_special_tokens (a pad alone is masked)."""
    if pysource.called_name(call) == "add_tokens":
        return True
    if pysource.keyword(call, "additional_special_tokens") is not None:
        return True
    return any(
        isinstance(arg, ast.Dict)
        and any(isinstance(k, ast.Constant) and k.value == "additional_special_tokens" for k in arg.keys)
        for arg in call.args
    )


def _lora_without_rows(call: ast.Call) -> list[str] | None:
    """The target_modules of a LoRA set-up that trains neither embedding nor head, or None when it does (or when
    it cannot be told: **kwargs, a computed target list, a regex)."""
    if pysource.has_star_kwargs(call) or any(
        pysource.keyword(call, name) is not None for name in ("modules_to_save", "trainable_token_indices")
    ):
        return None
    target = pysource.keyword(call, "target_modules")
    if target is None:
        return [] if pysource.called_name(call) == "LoraConfig" else None
    value = target.value
    literal: str | list[str] | None = (
        value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else _literal_names(value)
    )
    if literal is None:
        return None
    if _targets(literal, EMBEDDING_MODULES, _EMBEDDING_PATHS) or _targets(literal, HEAD_MODULES, _HEAD_PATHS):
        return None
    return [literal] if isinstance(literal, str) else literal


def _bnb(config: dict[str, Any]) -> str | None:
    """'4-bit' / '8-bit' when a quantization_config is bitsandbytes', else None."""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = quant.get("quant_method")
    if method not in (None, "bitsandbytes") and not (isinstance(method, str) and method.startswith("bitsandbytes")):
        return None
    if quant.get("load_in_4bit") is True or method == "bitsandbytes_4bit":
        return "4-bit"
    if quant.get("load_in_8bit") is True or method == "bitsandbytes_8bit":
        return "8-bit"
    return None


class QuantizationConfigOnFullWeights(Rule):
    id = "ADP002"
    name = "quantization-config-on-full-weights"
    summary = (
        "config.json declares bitsandbytes quantization the weights do not have (a merged folder saved in 16 bits)"
    )
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        config = target.config
        if config is None or not isinstance(config.data, dict) or target.adapter is not None:
            return  # an adapter's config.json describes its (quantized) base, not the adapter's tensors
        bits = _bnb(config.data)
        tensors = target.tensors
        if bits is None or not tensors or any(m in name for name in tensors for m in _BNB_MARKERS):
            return
        float_matrices = [t for t in tensors.values() if len(t.shape) == 2 and t.dtype in ("F16", "BF16", "F32")]
        if not float_matrices or any(t.dtype in ("U8", "I8") for t in tensors.values()):
            return
        dtypes = sorted({t.dtype for t in float_matrices})
        line, column = config.position("/quantization_config")
        yield self.finding(
            f"{config.path} declares bitsandbytes {bits} quantization, but its {len(float_matrices)} weight matrices "
            f"are {'/'.join(dtypes)} with no quantization state (no .absmax / .quant_state / .SCB tensors): "
            "from_pretrained treats the folder as pre-quantized: without bitsandbytes it refuses to load "
            f"(ImportError), with it every linear layer becomes a bitsandbytes {bits} layer before these weights "
            "are loaded into it",
            config.path,
            "/quantization_config",
            line,
            column,
            evidence={"bits": bits, "float_matrices": len(float_matrices), "dtypes": dtypes},
            fix=Fix(
                f"remove quantization_config from {config.path} (the weights are {'/'.join(dtypes)})",
                Applicability.SAFE,
                (RemoveJsonKey(config.path, "/quantization_config"),),
            ),
        )


class AdapterNeverTrained(Rule):
    id = "ADP003"
    name = "adapter-never-trained"
    summary = "Every LoRA matrix that starts at zero is still zero: the adapter changes nothing"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        from ttsdoctor.artifacts.row_stats import all_zero

        adapter = target.adapter
        if adapter is None or adapter.peft_type not in ("LORA", "ADALORA"):
            return
        if adapter.data.get("init_lora_weights", True) not in (True, "gaussian"):
            return  # PiSSA, OLoRA, LoftQ ... start from non-zero B and change the base itself
        # PEFT starts a linear layer's B and an embedding's A at zero (lora/layer.py reset_lora_parameters)
        matrices = [t for name, t in target.tensors.items() if ".lora_B." in name or name.endswith("lora_embedding_A")]
        if not matrices:
            return
        for tensor in matrices:
            if all_zero(tensor) is not True:
                return  # trained (or unreadable: not ours to judge)
        others = sorted(
            {
                module_of(name)
                for name in target.tensors
                if ".modules_to_save." in name or "trainable_tokens_delta" in name or "lora_magnitude_vector" in name
            }
        )
        pointer, line, column = _pointer(adapter, "r")
        if others:
            tail = (
                f"only its other saved parts ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}) can differ "
                "from the base"
            )
        else:
            tail = "applied or merged, the model is exactly the base model"
        yield self.finding(
            f"all {len(matrices)} LoRA matrices PEFT starts at zero (lora_B; lora_embedding_A of embeddings) in "
            f"{matrices[0].path} are still zero, so every B·A = 0: the adapter never trained (learning rate 0, no "
            f"optimizer steps, or saved before training); {tail}",
            adapter.doc.path,
            pointer,
            line,
            column,
            evidence={"zero_matrices": len(matrices), "other_trained_modules": others},
            severity=Severity.WARNING if others else None,
        )


class AdapterBaseRows(Rule):
    id = "ADP004"
    name = "adapter-base-rows"
    summary = "The adapter's embedding rows, the base model's and the tokenizer's sizes do not fit together"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        adapter = target.adapter
        tok = target.tokenizer.file if target.tokenizer is not None else None
        if adapter is None or tok is None or adapter.base_config is None:
            return
        base_rows = adapter.base_int("vocab_size")
        if base_rows is None:
            return
        rows = tok.id_count
        emb = saved_rows(target.tensors, EMBEDDING_MODULES)
        pointer, line, column = _pointer(adapter, "base_model_name_or_path")
        base = _base_text(adapter, base_rows)
        if emb is None or emb.rows is None:
            pads = {i for d in target.special_decls if d.role == "pad" for i in d.ids}
            beyond = [i for i in range(base_rows, rows) if i not in pads]
            if beyond:
                first = tok.token(beyond[0])
                yield self.finding(
                    f"the tokenizer beside the adapter has {rows} ids but {base} has {base_rows} rows and the "
                    f"adapter brings no embedding: ids {_ids_text(beyond)} (from {first!r}) "
                    "index past the embedding (a device-side assert on CUDA), or into rows AutoPeftModel adds "
                    "untrained",
                    adapter.doc.path,
                    pointer,
                    line,
                    column,
                    evidence={"tokenizer_rows": rows, "base_rows": base_rows, "beyond": len(beyond)},
                    severity=Severity.ERROR,
                )
            return
        auto = rows if rows > base_rows else base_rows  # AutoPeftModel resizes the base to len(tokenizer) if larger
        if emb.rows in (base_rows, auto):
            return
        yield self.finding(
            f"the adapter's {emb.name} has {emb.rows} rows, {base} has {base_rows} and the tokenizer beside it "
            f"{rows} ids: AutoPeftModelForCausalLM resizes the base to {auto} and fails with a size mismatch "
            f"({emb.rows} vs {auto}); PeftModel.from_pretrained loads it only after "
            f"model.resize_token_embeddings({emb.rows})",
            adapter.doc.path,
            pointer,
            line,
            column,
            evidence={"adapter_rows": emb.rows, "base_rows": base_rows, "tokenizer_rows": rows},
            fix=Fix(
                f"resize the base to {emb.rows} rows before loading the adapter (resize_token_embeddings("
                f"{rows}, pad_to_multiple_of=...) as in training), or save the tokenizer with the adapter's rows",
                Applicability.DISPLAY_ONLY,
            ),
        )
