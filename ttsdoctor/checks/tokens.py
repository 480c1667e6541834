"""TOK: special tokens across config.json, generation_config.json, tokenizer files and source."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from ttsdoctor.artifacts.embeddings import head_bias
from ttsdoctor.artifacts.hf_config import is_input_encoder
from ttsdoctor.artifacts.model_dir import ModelDir
from ttsdoctor.artifacts.source import SourceFile
from ttsdoctor.artifacts.special_tokens import SpecialDecl
from ttsdoctor.checks import pyflow, pysource
from ttsdoctor.codecs import end_of_speech_tokens
from ttsdoctor.families import FAMILIES
from ttsdoctor.finding import AddSpecialToken, Applicability, Edit, Finding, Fix, ResizeTensor, SetJsonValue, Severity
from ttsdoctor.fix_policy import PADDING_MULTIPLES, resizable
from ttsdoctor.rule import Rule

# Text prefilter: the AST is only walked in files this matches.
_PAD_TEXT = re.compile(r"pad_token(_id)?\s*=|[\"']pad_token_id[\"']\s*:")


PAD_EOS_CONSEQUENCE = (
    "transformers cannot infer an attention mask when pad is in the eos set, and a collator that "
    "masks pad labels masks every EOS, so a fine-tuned model never learns to stop"
)
_SPECIAL_LOOKING = re.compile(r"^(<[^<>\s]+>|<\|[^|]*\|>|\[[A-Za-z_0-9]+\])$")


def describe(model: ModelDir, token_id: int) -> str:
    tok = model.tokenizer.file if model.tokenizer is not None else None
    token = tok.token(token_id) if tok is not None else None
    return f"{token_id} ({token!r})" if token is not None else str(token_id)


def _levels(decls: tuple[SpecialDecl, ...]) -> dict[tuple[str, str], dict[str, SpecialDecl]]:
    """Declarations grouped by (file, sub-config), then by role."""
    out: dict[tuple[str, str], dict[str, SpecialDecl]] = {}
    for decl in decls:
        out.setdefault((decl.path, decl.scope), {})[decl.role] = decl
    return out


# --- choosing a pad token (shared by the pad fixes) ---------------------------------------------------


def choose_pad(model: ModelDir) -> tuple[int, str] | None:
    """An existing special token that can serve as pad: not eos/bos/unk, pad-like or reserved first."""
    if model.tokenizer is None or model.tokenizer.file is None:
        return None
    tok = model.tokenizer.file
    taken = {i for d in model.special_decls if d.role in ("eos", "bos", "unk") for i in d.ids}
    rows = model.embedding.rows if model.embedding is not None else None
    best: tuple[int, int, str] | None = None
    for token_id in sorted(tok.special):
        content = tok.token(token_id)
        if content is None or token_id in taken or (rows is not None and token_id >= rows):
            continue
        lowered = content.lower()
        if "pad" in lowered:
            rank = 0
        elif "reserved" in lowered or "unused" in lowered:
            rank = 1
        elif lowered in ("<|endoftext|>", "<|end_of_text|>") and token_id not in taken:
            rank = 2
        else:
            continue
        if best is None or (rank, token_id) < best[:2]:
            best = (rank, token_id, content)
    return (best[1], best[2]) if best else None


def _set_pad_edits(model: ModelDir, pad_id: int, content: str) -> list[Edit]:
    edits: list[Edit] = []
    for doc in (model.config, model.generation_config):
        if doc is not None:
            edits.append(SetJsonValue(doc.path, "/pad_token_id", pad_id))
    tokenizer = model.tokenizer
    if tokenizer is not None:
        for doc in (tokenizer.config, tokenizer.special_map):
            if doc is None:
                continue
            current = doc.data.get("pad_token")
            pointer = "/pad_token/content" if isinstance(current, dict) else "/pad_token"
            edits.append(SetJsonValue(doc.path, pointer, content))
    return edits


def pad_fix(model: ModelDir) -> Fix | None:
    """Use an unused special token as pad; else add `<|pad|>` (in a padding row if one is free).

    Only for directories with JSON configs to write (a GGUF file is reported, not rewritten)."""
    if (
        model.config is None
        and model.generation_config is None
        and (model.tokenizer is None or model.tokenizer.config is None)
    ):
        return None
    chosen = choose_pad(model)
    if chosen is not None:
        pad_id, content = chosen
        return Fix(
            f"Use the existing special token {content!r} (id {pad_id}) as pad at every level",
            Applicability.SAFE,
            tuple(_set_pad_edits(model, pad_id, content)),
        )
    tokenizer = model.tokenizer
    if tokenizer is None or tokenizer.file is None or tokenizer.file.token_id("<|pad|>") is not None:
        return None
    new_id = tokenizer.file.id_count
    edits: list[Edit] = [AddSpecialToken(tokenizer.file.path, "<|pad|>", new_id)]
    if tokenizer.config is not None and isinstance(tokenizer.config.data.get("added_tokens_decoder"), dict):
        entry = {
            "content": "<|pad|>",
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        edits.append(SetJsonValue(tokenizer.config.path, f"/added_tokens_decoder/{new_id}", entry))
    edits += _set_pad_edits(model, new_id, "<|pad|>")
    embedding, head = model.embedding, model.head
    if embedding is not None and embedding.rows is not None and new_id >= embedding.rows:
        multiple = next((m for m in PADDING_MULTIPLES if embedding.rows % m == 0), 1)
        rows = -(-(new_id + 1) // multiple) * multiple
        tensors = [t for t in (embedding, head, head_bias(model.tensors, head)) if t is not None]
        if not all(resizable(t, model.weights) for t in tensors):
            return None  # the new id would index past weights we cannot rewrite
        edits += [ResizeTensor(t.path, t.name, rows, tokenizer.file.id_count) for t in tensors]
        if model.config is not None and "vocab_size" in model.config.data:
            edits.append(SetJsonValue(model.config.path, "/vocab_size", rows))
        return Fix(
            f"Add a '<|pad|>' token (id {new_id}) and grow embedding and head to {rows} rows with the mean "
            "of the trained rows",
            Applicability.UNSAFE,
            tuple(edits),
        )
    return Fix(
        f"Add a '<|pad|>' token at id {new_id}, a free padding row of the embedding", Applicability.SAFE, tuple(edits)
    )


# --- rules --------------------------------------------------------------------------------------------


class PadIsEos(Rule):
    id = "TOK001"
    name = "pad-is-eos"
    summary = "The pad id equals the eos id (or is in the eos list) in a config or tokenizer file"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        intentional = _pad_eos_by_design(target)
        fix = None if intentional else pad_fix(target)
        speech_end = _speech_end(target)
        for (path, scope), roles in _levels(target.special_decls).items():
            pad, eos = roles.get("pad"), roles.get("eos")
            if pad is None or eos is None or not pad.ids or not set(pad.ids) & set(eos.ids):
                continue
            if is_input_encoder(scope):  # Whisper's pad == eos in a speech LLM's audio encoder: never generated
                continue
            if pad.unread and _same_as_loaded(target, pad, eos):
                continue  # an unread special_tokens_map.json agreeing with tokenizer_config.json: reported there
            pad_id = pad.ids[0]
            shown = describe(target, pad_id) if pad.text_space else str(pad_id)
            key = "pad_token" if pad.token is not None else "pad_token_id"
            eos_key = "eos_token" if eos.token is not None else "eos_token_id"
            if len(eos.ids) > 1:
                equals = f"is in the {eos_key} list {list(eos.ids)}"
            else:
                equals = f"equals {eos_key}"
            evidence = {
                "pad": {"id": pad_id, "from": f"{path}#{pad.pointer}"},
                "eos": {"ids": list(eos.ids), "from": f"{path}#{eos.pointer}"},
            }
            what = f"{key} {shown} {equals} in {pad.level}"
            verdict = _pad_eos_verdict(target, what, pad, eos, intentional, speech_end)
            yield self.finding(
                verdict.message,
                path,
                pad.pointer,
                pad.line,
                pad.column,
                {**evidence, **verdict.evidence},
                fix if verdict.fixable else None,
                severity=verdict.severity,
            )


def _loaded_ids(target: ModelDir) -> dict[str, tuple[int, ...]]:
    """The special ids tokenizer_config.json declares, by role: what the tokenizer loads beside added_tokens_decoder."""
    return {d.role: d.ids for d in target.special_decls if d.level == "tokenizer_config.json"}


def _same_as_loaded(target: ModelDir, *decls: SpecialDecl) -> bool:
    """Whether tokenizer_config.json declares the same ids for these roles."""
    loaded = _loaded_ids(target)
    return all(loaded.get(d.role) == d.ids for d in decls)


class _Verdict(NamedTuple):
    message: str
    severity: Severity | None  # None: the rule's (an error)
    fixable: bool  # whether a pad token of its own is worth the fix
    evidence: dict[str, int]


def _pad_eos_verdict(
    target: ModelDir,
    what: str,
    pad: SpecialDecl,
    eos: SpecialDecl,
    intentional: str | None,
    speech_end: tuple[str, int, str] | None,
) -> _Verdict:
    """What pad in the eos set means at one level: by design (info), a family stopping on its own end-of-speech
    token (info), an eos list whose other ids include the tokenizer's eos (info) or whose learned stop is not
    shown (warning), or the seed failure (error)."""
    if intentional:
        return _Verdict(f"{what}: {intentional}", Severity.INFO, False, {})
    if pad.unread:
        loaded = _loaded_ids(target)
        shown = ", ".join(f"{role} {describe(target, loaded[role][0])}" for role in ("pad", "eos") if loaded.get(role))
        return _Verdict(
            f"{what}, a file transformers does not read next to a tokenizer_config.json with added_tokens_decoder "
            f"(checked on transformers 5.23): the tokenizer loads {shown or 'no pad or eos'} from "
            "tokenizer_config.json. A tool that reads special_tokens_map.json still gets pad == eos: make the two "
            "files agree",
            Severity.INFO,
            False,
            {},
        )
    if speech_end is not None and speech_end[1] not in pad.ids:
        name, end_id, family_name = speech_end
        return _Verdict(
            f"{what}, but {family_name} stops on {name} (id {end_id}), a different token: a collator masking pad "
            "labels does not hide the end of speech. Only generate() without an attention_mask is affected where "
            "this eos is its stop id: worth a pad token of its own",
            Severity.INFO,
            True,
            {"end_of_speech": end_id},
        )
    tokenizer_pad = _tokenizer_ids(target, "pad")
    if pad.level == "generation_config.json" and tokenizer_pad and not tokenizer_pad & set(eos.ids):
        shown = describe(target, min(tokenizer_pad))
        return _Verdict(
            f"{what}, but the tokenizer pads with {shown}: collators pad and mask labels with that token, so no eos "
            "is masked in training. generate() reads this pad: it cannot infer an attention mask from it (the seed "
            "OuteTTS report's warning), so a padded batch without attention_mask attends to its padding; set the "
            "tokenizer's pad here",
            Severity.WARNING,
            True,  # the pad fix sets this level's pad to the tokenizer's
            {"tokenizer_pad": min(tokenizer_pad)},
        )
    others = [i for i in eos.ids if i not in pad.ids]
    if others:  # a list with stop ids besides pad: generation still stops on those
        tokenizer_eos = _tokenizer_ids(target, "eos")
        learned = [i for i in others if i in tokenizer_eos]
        if learned:
            return _Verdict(
                f"{what}, but the tokenizer's eos is {describe(target, learned[0])}, another id of that list: "
                "generation stops on it, and a collator masking pad labels does not mask it. Only generate() "
                "without an attention_mask is affected: transformers cannot infer the mask when pad is in the eos "
                "set",
                Severity.INFO,
                False,
                {"tokenizer_eos": learned[0]},
            )
        if not tokenizer_eos:  # which id training ends sequences with is not shown
            return _Verdict(
                f"{what}: transformers cannot infer an attention mask when pad is in the eos set; generation still "
                f"stops on {others}, and whether training ends sequences with the pad token (which a collator "
                "masking pad labels would hide) is not shown, as no tokenizer file here declares an eos token",
                Severity.WARNING,
                True,
                {},
            )
    return _Verdict(f"{what}: {PAD_EOS_CONSEQUENCE}", None, True, {})


_TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def _tokenizer_ids(target: ModelDir, role: str) -> set[int]:
    """The ids of a role the tokenizer files transformers reads declare (not a special_tokens_map.json it skips):
    the eos collators and chat templates end with, the pad they pad with."""
    return {
        i
        for d in target.special_decls
        if d.role == role and not d.scope and d.level in _TOKENIZER_FILES and not d.unread
        for i in d.ids
    }


WHISPER_PAD = "as in Whisper's own config (both <|endoftext|>): its collators mask labels by the attention mask"


def _pad_eos_by_design(target: ModelDir) -> str | None:
    """Why pad == eos is meant in this folder's model: a family whose pad equals eos by design (Parler-TTS's and
    MusicGen's codebook decoders), or Whisper (openai/whisper-* and its fine-tunes: pad_token_id and eos_token_id
    both 50257; the encoder reads audio features, so there is no mask to infer from ids). None otherwise."""
    family = target.family
    if family is not None and family.pad_equals_eos_by_design:
        return f"intentional for {family.name} ({family.note})"
    # in tokenizer.json, or (a slow tokenizer's vocab.json + merges.txt) in added_tokens.json
    whisper_tokens = target.tokenizer is not None and target.tokenizer.resolve("<|startoftranscript|>") is not None
    if target.model_type == "whisper" or (target.model_type is None and whisper_tokens):
        return WHISPER_PAD
    return None


def _speech_end(target: ModelDir) -> tuple[str, int, str] | None:
    """(token, id, family) of the family's end-of-speech token when the tokenizer has it: the id the model learns
    to stop on (Llasa's <|SPEECH_GENERATION_END|>, Orpheus's <custom_token_2>), which a text eos may differ from."""
    facts = target.serving
    if facts is None or facts.end_of_speech is None or target.tokenizer is None:
        return None
    end_id = target.tokenizer.resolve(facts.end_of_speech)
    return None if end_id is None else (facts.end_of_speech, end_id, facts.family)


def _attr_name(node: ast.AST) -> str | None:
    return node.attr if isinstance(node, ast.Attribute) else None


def _const_int(node: ast.AST | None) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


# Config classes whose own defaults make pad == eos (transformers 5.23; a test checks this table against the installed
# version): model_type -> (class, the id both default to). A config dict or call writing these values writes what the
# class gives anyway (xgen-mm's remote code embeds Phi3Config's defaults as its fallback text config).
CONFIG_DEFAULT_PAD_EOS = {
    "aria_text": ("AriaTextConfig", 2),
    "eurobert": ("EuroBertConfig", 128001),
    "falcon_mamba": ("FalconMambaConfig", 0),
    "internlm3": ("InternLM3Config", 2),
    "mamba": ("MambaConfig", 0),
    "nanochat": ("NanoChatConfig", 1),
    "openai_privacy_filter": ("OpenAIPrivacyFilterConfig", 199999),
    "phi3": ("Phi3Config", 32000),
    "ultrabert": ("UltrabertConfig", 0),
    "vibevoice": ("VibeVoiceConfig", 151643),
    "whisper": ("WhisperConfig", 50256),
}
_DEFAULT_PAD_EOS_OF_CLASS = dict(CONFIG_DEFAULT_PAD_EOS.values())  # class -> the id pad and eos default to


def _class_defaults(node: ast.AST, called: str, pad: int) -> str | None:
    """The config class whose own defaults are this pad == eos: a call of that class, or a dict whose model_type
    names it."""
    if isinstance(node, ast.Call):
        return called if _DEFAULT_PAD_EOS_OF_CLASS.get(called) == pad else None
    if isinstance(node, ast.Dict):
        model_type = next((v for k, v, _ in pysource.dict_items(node) if k == "model_type"), None)
        if isinstance(model_type, ast.Constant):
            entry = CONFIG_DEFAULT_PAD_EOS.get(str(model_type.value))
            return entry[0] if entry is not None and entry[1] == pad else None
    return None


class PadIsEosInSource(Rule):
    """pad = eos in code. What makes it matter is read from the module's tree: label or attention masking by
    comparison with the pad id (or DataCollatorForLanguageModeling) makes it an error, a module that trains a
    warning; otherwise (inference code) it is worth knowing, not a bug by itself."""

    id = "TOK002"
    name = "pad-is-eos-in-source"
    summary = "Source code that makes the pad token the eos token"
    severity = Severity.WARNING

    def check_source(self, target: SourceFile) -> Iterator[Finding]:
        if not pysource.mentions(target.text, "pad_token", _PAD_TEXT):
            return
        facts = pyflow.pad_facts(target)
        for assign, guarded in facts.pad_is_eos:
            yield _pad_is_eos_finding(self, target, assign, guarded, facts)
        for node, _scope, _loop in pysource.nodes(target, _PAD_TEXT):
            pad = eos = None
            anchor: ast.AST | None = None
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values):
                    if isinstance(k, ast.Constant) and k.value == "pad_token_id":
                        pad, anchor = _const_int(v), k
                    elif isinstance(k, ast.Constant) and k.value == "eos_token_id":
                        eos = _const_int(v)
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "pad_token_id":
                        pad, anchor = _const_int(kw.value), kw
                    elif kw.arg == "eos_token_id":
                        eos = _const_int(kw.value)
            if pad is not None and pad == eos and anchor is not None:
                called = (pysource.called_name(node) or "") if isinstance(node, ast.Call) else ""
                design = _by_design(called)
                defaults = _class_defaults(node, called, pad)
                message = f"pad_token_id {pad} equals eos_token_id {eos}: {PAD_EOS_CONSEQUENCE}"
                severity = Severity.INFO if design or defaults else Severity.ERROR
                if design:
                    message = f"pad_token_id {pad} equals eos_token_id {eos} in {called}(...): {design}"
                elif defaults:
                    message = (
                        f"pad_token_id {pad} equals eos_token_id {eos}: {defaults}'s own defaults (transformers 5.23), "
                        "what the model gets without writing them; whether training masks every eos depends on the "
                        "tokenizer it pads with (TOK001 judges the model folder)"
                    )
                elif isinstance(node, ast.Call) and not _sets_config(called) and not facts.masks_pad:
                    # a function of the project (RWKVTTS's process_batch pads labels with -100 by length): what it
                    # does with the two ids is its own, and nothing in this module masks by the pad id
                    message = (
                        f"pad_token_id {pad} equals eos_token_id {eos} in {called}(...), which is not a config: "
                        f"what it does with them is up to {called}, and nothing in this module masks labels or "
                        "attention by the pad id"
                    )
                    severity = Severity.INFO
                yield self.finding(
                    message,
                    target.path,
                    line=getattr(anchor, "lineno", None),
                    column=getattr(anchor, "col_offset", -1) + 1,
                    severity=severity,
                )


def _sets_config(called: str) -> bool:
    """A call whose pad and eos become a model's or tokenizer's: a config class (LlamaConfig, GenerationConfig),
    from_pretrained overrides, or a dict / update of settings."""
    return called.endswith("Config") or called in ("from_pretrained", "dict", "update")


def _by_design(called: str) -> str | None:
    """Why pad == eos is meant in the model a config class builds: a family of families.py whose pad equals eos by
    design (Parler-TTS's and MusicGen's codebook decoders, as TOK001 knows them), or Whisper (pad_token_id and
    eos_token_id are both <|endoftext|> 50257 in openai/whisper-* config.json). None for any other class."""
    low = called.lower()
    for family in FAMILIES:
        if family.pad_equals_eos_by_design and family.name.lower().split("-")[0] in low:
            return f"intentional for {family.name} ({family.note})"
    if "whisper" in low:
        return WHISPER_PAD
    return None


def _pad_is_eos_finding(rule: Rule, target: SourceFile, node: ast.Assign, guarded: bool, facts: Any) -> Finding:
    source = pysource.segment(target, node) or "pad_token = eos_token"
    line, column = node.lineno, node.col_offset + 1
    # guarded by `if tokenizer.pad_token is None`: whether it runs depends on the tokenizer (unsloth's loaders
    # add a pad token, plain Llama 3 tokenizers have none), which the module does not show
    condition = " (only when the tokenizer has no pad token, as Llama 3's has none)" if guarded else ""
    if facts.masks_pad:
        mask_node, what = facts.masks_pad[0]
        speech_end = _speech_end_in(target)
        if speech_end is not None:  # stopping is learned on that token: masking EOS does not stop the model stopping
            end, end_line = speech_end
            return rule.finding(
                f"`{source}`{condition} and {target.line_name(mask_node.lineno)} {what}: EOS is masked like the "
                f"padding, so the model never learns to emit it; it stops on {end} ({target.line_name(end_line)}), "
                "which stays trained, but every EOS inside a sequence (a chat template's turn ends) is masked as "
                "if it were padding: give pad a token of its own",
                target.path,
                evidence={"masking": target.line_name(mask_node.lineno), "guarded": guarded, "stops_on": end},
                severity=Severity.INFO if guarded else Severity.WARNING,
                line=line,
                column=column,
            )
        return rule.finding(
            f"`{source}`{condition} and {target.line_name(mask_node.lineno)} {what}: every EOS label is masked with "
            "the padding, so the fine-tuned model never learns to emit EOS (it can stop only at another trained end "
            "token)",
            target.path,
            evidence={"masking": target.line_name(mask_node.lineno), "guarded": guarded},
            severity=Severity.INFO if guarded else Severity.ERROR,
            line=line,
            column=column,
        )
    if facts.trains is not None:  # a collator that pads labels with -100 by length (Seq2Seq, trl's) is fine
        # SFTTrainer's default collator was transformers' DataCollatorForLanguageModeling until TRL 0.17
        # (huggingface/trl#3200); the module does not say which TRL runs it
        sft = facts.sft_default
        older = (
            f" (SFTTrainer at {target.line_name(sft.lineno)} takes TRL's default collator, which does so since TRL "
            "0.17; before it, transformers' DataCollatorForLanguageModeling masked every EOS here, "
            "huggingface/trl#3200)"
            if sft is not None
            else ""
        )
        return rule.finding(
            f"`{source}`{condition} in a module that trains ({target.line_name(facts.trains.lineno)}), with no "
            f"masking by the pad id in it: fine while labels are padded with -100 by length{older}, but "
            f"{PAD_EOS_CONSEQUENCE}",
            target.path,
            evidence={"training": target.line_name(facts.trains.lineno), "guarded": guarded},
            severity=Severity.INFO,
            line=line,
            column=column,
        )
    stop = target.stops_at
    unread = f" (the code after {stop[1]} at line {stop[0]} does not run as the file stands: not read)" if stop else ""
    return rule.finding(
        f"`{source}`{condition} makes pad the eos token: harmless for one unpadded prompt at a time, but "
        f"{PAD_EOS_CONSEQUENCE}{unread}",
        target.path,
        severity=Severity.INFO,
        line=line,
        column=column,
    )


def _speech_end_in(source: SourceFile) -> tuple[str, int] | None:
    """A family's end-of-speech token the module names ('<|SPEECH_GENERATION_END|>', '<custom_token_2>'), or a
    variable holding a speech end id (`end_of_speech`, `self.speech_generation_end_id`, `audio_end_id`): the token
    such a module trains the model to stop on. (How it is written, its line.)"""
    tokens = end_of_speech_tokens()
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in tokens:
            return repr(node.value), node.lineno
        if isinstance(node, ast.Assign):
            for target in node.targets:
                name = target.id if isinstance(target, ast.Name) else _attr_name(target)
                parts = set((name or "").lower().split("_"))
                if parts & {"speech", "audio"} and parts & {"end", "stop"}:
                    return str(name), node.lineno
    return None


class SpecialIdOutOfRange(Rule):
    id = "TOK003"
    name = "special-id-out-of-range"
    summary = "A special token id outside the embedding rows, or a special token the tokenizer does not have"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        embedding = target.embedding
        limit: int | None = None
        source = ""
        if embedding is not None and embedding.rows is not None:
            limit, source = embedding.rows, f"the embedding {embedding.name} has {embedding.rows} rows"
        elif target.config is not None and target.shares_tokenizer_space:
            vocab = target.config_scopes[0].get_int(target.text_vocab_key)
            if vocab is not None:
                limit, source = vocab, f"config.json {target.text_vocab_key} is {vocab}"
        # "not in the tokenizer" needs the vocabulary itself: a tokenizer.json that is a Git LFS pointer, absent, or
        # a SentencePiece tokenizer.model ttsdoctor does not read leaves the question open (DocWobble's Orpheus)
        vocabulary_read = target.tokenizer is not None and target.tokenizer.file is not None
        for decl in target.special_decls:
            if not decl.text_space:
                continue
            if decl.token is not None and not decl.ids:
                if not vocabulary_read:
                    continue
                yield self.finding(
                    f"{decl.role}_token {decl.token!r} in {decl.level} is not in the tokenizer: "
                    "transformers adds it as a new token whose id has no embedding row",
                    decl.path,
                    decl.pointer,
                    decl.line,
                    decl.column,
                )
                continue
            if limit is None:
                continue
            for token_id in decl.ids:
                if token_id >= limit:
                    key = f"{decl.role}_token" if decl.token is not None else f"{decl.role}_token_id"
                    effect, severity = _out_of_range_effect(target, decl)
                    yield self.finding(
                        f"{key} {describe(target, token_id)} in {decl.level} is outside the embedding: {source}"
                        f"{effect}",
                        decl.path,
                        decl.pointer,
                        decl.line,
                        decl.column,
                        {"id": token_id, "rows": limit, "rows_from": source},
                        severity=severity,
                    )


_CRASH = "IndexError on CPU, device-side assert on CUDA"


def _out_of_range_effect(target: ModelDir, decl: SpecialDecl) -> tuple[str, Severity | None]:
    """What an id past the embedding breaks, by where it is declared. A tokenizer's token is in every encoded input
    it adds; a config's ids are read by generate(): its eos is never produced (so never stopped on), and a
    decoder-only model's bos is fed only to a generate() given no prompt (a leftover GPT2Config default 50256 in a
    53-token model, as HelgeS/capp-gpt-serve has it): a prompt brings its own tokens."""
    if decl.token is not None:
        return f" ({_CRASH})", None
    if decl.role == "eos":
        return (
            f": the model can never produce it, so generate() never stops on it, and a sequence that carries it "
            f"fails ({_CRASH})",
            None,
        )
    if decl.role == "bos" and target.shares_tokenizer_space:
        return (
            f": generate() feeds it only when given no prompt ({_CRASH} then); a prompt brings its own tokens",
            Severity.WARNING,
        )
    return f" ({_CRASH})", None


class SpecialIdOrdinaryToken(Rule):
    id = "TOK004"
    name = "special-id-ordinary-token"
    summary = "A special token id that points at an ordinary text token"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.tokenizer is None:
            return
        tokenizer = target.tokenizer
        if tokenizer is None or tokenizer.file is None:
            return
        for decl in target.special_decls:
            if not decl.text_space or decl.token is not None or decl.role == "unk":
                continue
            for token_id in decl.ids:
                content = tokenizer.file.token(token_id)
                if content is None or tokenizer.is_special(token_id) or _SPECIAL_LOOKING.match(content):
                    continue
                consequence = {
                    "eos": f"generation stops at every {content!r} in the output",
                    "pad": f"every {content!r} in the text is treated as padding when masks are inferred",
                    "bos": f"every sequence starts with the text token {content!r}",
                }[decl.role]
                yield self.finding(
                    f"{decl.role}_token_id {token_id} in {decl.level} is the ordinary text token "
                    f"{content!r}: {consequence}",
                    decl.path,
                    decl.pointer,
                    decl.line,
                    decl.column,
                    {"id": token_id, "token": content},
                    severity=Severity.ERROR if decl.role in ("eos", "pad") else Severity.WARNING,
                )


class SpecialIdInconsistent(Rule):
    id = "TOK005"
    name = "special-id-inconsistent"
    summary = "The same special token has different ids in config.json, generation_config.json and tokenizer files"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        decls = [d for d in target.special_decls if d.text_space and d.ids]
        for role in ("pad", "eos", "bos"):
            of_role = [d for d in decls if d.role == role]
            if len(of_role) < 2:
                continue
            read = [d for d in of_role if not d.unread]
            reference = next((d for d in read if d.token is not None), read[0] if read else of_role[0])
            for decl in of_role:
                if decl is reference:
                    continue
                if _agree(role, decl, reference):
                    continue
                ref_ids = ", ".join(describe(target, i) for i in reference.ids)
                ids = ", ".join(describe(target, i) for i in decl.ids)
                fix = None
                if len(reference.ids) == 1 and decl.token is None:
                    value: Any = reference.ids[0]
                    fix = Fix(
                        f"Set {role}_token_id to {reference.ids[0]} as in {reference.level}",
                        Applicability.SAFE,
                        (SetJsonValue(decl.path, decl.pointer, value),),
                    )
                harmless = _why_harmless(target, role, decl, reference, of_role)
                yield self.finding(
                    f"{role} is {ids} in {decl.level} but {ref_ids} in {reference.level}"
                    + (f": {harmless}" if harmless else ""),
                    decl.path,
                    decl.pointer,
                    decl.line,
                    decl.column,
                    {decl.level: list(decl.ids), reference.level: list(reference.ids)},
                    fix,
                    severity=Severity.INFO if harmless else None,
                )


def _agree(role: str, a: SpecialDecl, b: SpecialDecl) -> bool:
    return bool(set(a.ids) & set(b.ids)) if role == "eos" else a.ids[0] == b.ids[0]


def _why_harmless(
    target: ModelDir, role: str, decl: SpecialDecl, reference: SpecialDecl, of_role: list[SpecialDecl]
) -> str | None:
    """Why a disagreement reaches no sequence and no generate() call (then it is info), or None."""
    if role == "bos" and _never_adds_bos(target, reference):
        return (
            "the tokenizer never adds its bos (add_bos_token false, and no post-processor adds it), and generate() "
            "feeds the generation bos only when it gets no prompt, so no sequence carries either; align them if you "
            "generate without a prompt"
        )
    if decl.unread or reference.unread:
        return (
            "transformers does not read special_tokens_map.json next to a tokenizer_config.json with "
            "added_tokens_decoder (checked on transformers 5.23), so the tokenizer loads tokenizer_config.json's; a "
            "tool that reads the map gets the other"
        )
    # not pad: config.json's pad_token_id is also the embedding's padding_idx (LlamaModel, Qwen2Model on 5.23), a row
    # training never updates
    generation = next((d for d in of_role if d.level == "generation_config.json"), None)
    if role != "pad" and decl.level == "config.json" and generation is not None and _agree(role, generation, reference):
        return (
            f"generation_config.json, which generate() reads instead of config.json (checked on transformers 5.23), "
            f"agrees with the tokenizer; only code reading model.config.{role}_token_id gets the other"
        )
    return None


def _never_adds_bos(target: ModelDir, reference: SpecialDecl) -> bool:
    """Whether the tokenizer never puts its bos into an encoding: tokenizer_config.json says add_bos_token false (as
    Qwen-based chat models write it, MiniCPM-o naming <|im_start|> as bos) and tokenizer.json's post-processor, when
    there is one, adds no such token (a template naming the bos adds it whatever add_bos_token says)."""
    tokenizer = target.tokenizer
    config = tokenizer.config if tokenizer is not None else None
    if tokenizer is None or config is None or not isinstance(config.data, dict):
        return False
    if config.data.get("add_bos_token") is not False or not reference.level.startswith("tokenizer"):
        return False
    file = tokenizer.file
    if file is None or file.kind == "vocab.json":
        return True
    return file.post_specials is not None and reference.token not in file.post_specials


class MissingPad(Rule):
    id = "TOK006"
    name = "missing-pad"
    summary = "No pad token at any level"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.tokenizer is None:
            return
        decls = target.special_decls
        if any(d.role == "pad" for d in decls):
            return  # an unread special_tokens_map.json's pad too: the tokenizer class may default to the same token
        if not decls:
            return  # no Hugging Face special tokens at all (coqui XTTS, F5-TTS): pad is not this layout's notion
        eos = next((d for d in decls if d.role == "eos" and d.ids and d.text_space), None)
        levels = [p for p in ("config.json", "generation_config.json", "tokenizer_config.json") if p in target.names]
        where = ", ".join(levels) or "any tokenizer file"
        fallback = (
            f"generate() falls back to eos {describe(target, eos.ids[0])} as pad, which puts pad in the eos set"
            if eos is not None
            else "batches cannot be padded"
        )
        tokenizer_config = target.tokenizer.config
        anchor = tokenizer_config.path if tokenizer_config is not None else None
        path = anchor or (target.config.path if target.config is not None else target.path)
        # a tokenizer's files, with or without the base model's config.json, and no weights: vendored (GPT-2's by
        # Whisper, Llama 3.2's as the text tokenizer of a CSM-style model): no model here is trained or run
        alone = target.weights is None and target.generation_config is None
        if alone:
            held = "a tokenizer and a config.json" if target.config is not None else "a tokenizer alone"
            fallback += f"; this folder holds {held}, no weights, so whether a model pads with it is not shown"
        yield self.finding(
            f"no pad token in {where}: {fallback}",
            path,
            None,
            None,
            None,
            {"levels": levels},
            None if alone else pad_fix(target),  # vendored files are not ttsdoctor's to change
            severity=Severity.INFO if alone else None,
        )


class AddedTokenIdMismatch(Rule):
    id = "TOK007"
    name = "added-token-id-mismatch"
    summary = "tokenizer.json declares an added token id that the tokenizers library does not assign"
    severity = Severity.ERROR

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        if target.tokenizer is None:
            return
        tokenizer = target.tokenizer
        if tokenizer is None or tokenizer.file is None:
            return
        tok = tokenizer.file
        for added in tok.declared_added:
            effective = tok.token_id(added.content)
            if effective is None or added.declared_id == effective:
                continue
            pointer = f"/added_tokens/{added.position}/id"
            fix = Fix(
                f"Set the declared id of {added.content!r} to {effective}",
                Applicability.SAFE,
                (SetJsonValue(tok.path, pointer, effective),),
            )
            yield self.finding(
                f"added token {added.content!r} declares id {added.declared_id} but the tokenizers "
                f"library assigns {effective}: code that trusts the file uses the wrong row",
                tok.path,
                pointer,
                evidence={"declared": added.declared_id, "effective": effective},
                fix=fix,
            )


# transformers 5 (models/auto/tokenization_auto.py, 5.23): for these model types AutoTokenizer instantiates the
# registered class whatever tokenizer_class says (MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS, or no
# tokenizer_class at all), and the class's __init__ builds its own pipeline (byte-level BPE with Qwen's split
# regex), keeping only the vocabulary and merges of tokenizer.json.
REBUILT_BY_MODEL_TYPE = {
    "qwen2": "Qwen2Tokenizer",
    "qwen3_5": "Qwen3_5Tokenizer",
    "qwen3_5_moe": "Qwen3_5Tokenizer",
    "qwen3_5_moe_text": "Qwen3_5Tokenizer",
}


class TokenizerRebuiltByModelType(Rule):
    id = "TOK008"
    name = "tokenizer-rebuilt-by-model-type"
    summary = "AutoTokenizer replaces the saved tokenizer.json by the class transformers registers for the model_type"
    severity = Severity.WARNING

    def check_model(self, target: ModelDir) -> Iterator[Finding]:
        model_type = target.model_type
        cls = REBUILT_BY_MODEL_TYPE.get(model_type or "")
        bundle = target.tokenizer
        if cls is None or bundle is None or bundle.file is None or target.config is None:
            return
        tok = bundle.file
        if not tok.path.endswith("tokenizer.json"):
            return
        auto_map = bundle.config.data.get("auto_map") if bundle.config is not None else None
        if auto_map:
            return  # custom tokenizer code decides (with trust_remote_code)
        pre = tok.pre_tokenizers
        if tok.kind == "BPE" and "ByteLevel" in pre:
            return  # the pipeline the class builds is the saved one's kind
        saved = f"{tok.kind} with pre-tokenizer {' + '.join(pre) if pre else 'none'}"
        yield self.finding(
            f"model_type {model_type!r}: transformers 5's AutoTokenizer builds {cls} for it, whatever tokenizer_class "
            f"says, and rebuilds a byte-level BPE from the vocabulary of tokenizer.json; the saved tokenizer is "
            f"{saved}, so text encodes to other ids than the model was trained on (a vocabulary without merges "
            "encodes most words to nothing)",
            target.config.path,
            "/model_type",
            evidence={"model_type": model_type, "class": cls, "saved_model": tok.kind, "pre_tokenizers": list(pre)},
            fix=Fix(
                "Load the tokenizer with PreTrainedTokenizerFast.from_pretrained(path), which keeps tokenizer.json; "
                "`ttsdoctor smoke` shows both encodings",
                Applicability.DISPLAY_ONLY,
            ),
        )
