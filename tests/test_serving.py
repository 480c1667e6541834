"""SRV rules and COD005 with values computed by hand from the fixture files and the public figures, and the
source-side precision cases found on real code (a notebook listing TTS models but loading a text LLM)."""

from __future__ import annotations

import ast
import json
import os
import shutil

from conftest import FIXTURES

from ttsdoctor import engine
from ttsdoctor.checks.pysource import parameter_default
from ttsdoctor.codecs import codecs, serving_facts
from ttsdoctor.discover import discover
from ttsdoctor.finding import Applicability, SetJsonValue, SetYamlValue
from ttsdoctor.registry import ALL_RULES


def _findings(path: str, rule: str) -> list:
    return [f for f in engine.run(ALL_RULES, discover([str(path)])).findings if f.rule_id == rule]


def test_serving_figures_follow_from_the_codec_registry_and_name_their_source() -> None:
    # tokens per second of audio = codec frames per second x tokens per frame in the LM stream
    assert serving_facts("Orpheus").tokens_per_second == codecs()["snac_24khz"].frames_per_second * 7 == 84
    assert serving_facts("Llasa").tokens_per_second == codecs()["xcodec2"].frames_per_second == 50
    assert serving_facts("OuteTTS 1.0").tokens_per_second == codecs()["dac_24khz"].frames_per_second * 2 == 150
    assert serving_facts("OuteTTS 0.2/0.3").tokens_per_second == codecs()["wavtokenizer"].frames_per_second
    assert serving_facts("Chatterbox T3").tokens_per_second == codecs()["s3tokenizer"].frames_per_second
    for family in ("Orpheus", "Llasa", "OuteTTS 1.0", "OuteTTS 0.2/0.3", "Spark-TTS", "Chatterbox T3", "CosyVoice"):
        facts = serving_facts(family)
        assert facts is not None and facts.rate_source
        assert facts.end_of_speech is None or facts.end_of_speech_source
        assert (facts.min_repetition_penalty is None and not facts.needs_sampling) or facts.sampling_source
    assert serving_facts("Parler-TTS") is None and serving_facts(None) is None


def test_budget_in_seconds_of_audio() -> None:
    (finding,) = _findings(os.path.join(FIXTURES, "SRV001/bad/orpheus-256-new-tokens"), "SRV001")
    assert finding.location.pointer == "/max_new_tokens" and (finding.location.line, finding.location.column) == (7, 3)
    assert finding.evidence["seconds"] == round(256 / 84, 2) == 3.05
    assert "3.0 s of audio at 84 tokens per second" in finding.message
    (edit,) = finding.fix.edits
    assert finding.fix.applicability is Applicability.SAFE
    assert isinstance(edit, SetJsonValue) and edit.value == 30 * 84  # the `seconds` option, 30 s

    (default,) = _findings(os.path.join(FIXTURES, "SRV001/bad/orpheus-vllm-default-max-tokens"), "SRV001")
    assert default.evidence["budget_tokens"] == 16 and "0.19 s of audio" in default.message
    assert (default.location.line, default.location.column) == (8, 10)


def test_budget_not_judged_without_a_loaded_family_or_when_set_later(tmp_path) -> None:
    (tmp_path / "serve.py").write_text(
        "from vllm import LLM, SamplingParams\n"
        'llm = LLM(model="canopylabs/orpheus-3b-0.1-ft")\n'
        "params = SamplingParams(temperature=0.6, repetition_penalty=1.1)\n"
        "params.max_tokens = 1200\n"
    )
    assert _findings(tmp_path / "serve.py", "SRV001") == []
    # two families loaded in one file: which budget belongs to which is not known, nothing is said
    (tmp_path / "serve.py").write_text(
        "from transformers import AutoModelForCausalLM\n"
        'a = AutoModelForCausalLM.from_pretrained("canopylabs/orpheus-3b-0.1-ft")\n'
        'b = AutoModelForCausalLM.from_pretrained("HKUSTAudio/Llasa-1B")\n'
        "out = a.generate(input_ids=x, attention_mask=m, max_new_tokens=100, repetition_penalty=1.0)\n"
    )
    assert _findings(tmp_path / "serve.py", "SRV001") == [] and _findings(tmp_path / "serve.py", "SRV003") == []
    # the model named through a variable, as scripts write it
    (tmp_path / "serve.py").write_text(
        "from transformers import AutoModelForCausalLM\n"
        'MODEL_ID = "HKUSTAudio/Llasa-3B"\n'
        "model = AutoModelForCausalLM.from_pretrained(MODEL_ID)\n"
        "out = model.generate(input_ids=x, attention_mask=m, max_new_tokens=250, do_sample=False)\n"
    )
    (budget,) = _findings(tmp_path / "serve.py", "SRV001")
    assert budget.evidence == {"budget_tokens": 250, "seconds": 5.0}  # 250 tokens at Llasa's 50 tokens/s
    (greedy,) = _findings(tmp_path / "serve.py", "SRV003")
    assert greedy.evidence == {"setting": "do_sample=False"} and greedy.location.line == 4


def test_end_of_speech_added_to_the_stop_ids_and_nested_eos_lifted(tmp_path) -> None:
    folder = os.path.join(FIXTURES, "SRV002/bad/orpheus-eos-eot-only")
    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as fh:
        added = {t["content"]: t["id"] for t in json.load(fh)["added_tokens"]}
    eot, speech_end = added["<|eot_id|>"], added["<custom_token_2>"]
    (finding,) = _findings(folder, "SRV002")
    assert finding.evidence == {"end_of_speech": speech_end, "stop_ids": [eot]}
    (edit,) = finding.fix.edits
    assert edit.value == [eot, speech_end] and edit.path.endswith("generation_config.json")

    (nested,) = _findings(os.path.join(FIXTURES, "SRV002/bad/cosyvoice3-nested-eos"), "SRV002")
    assert nested.location.pointer == "/llm/eos_token_id" and nested.evidence["eos_token_id"] == 6562
    (lift,) = nested.fix.edits
    assert (lift.pointer, lift.value) == ("/eos_token_id", 6562)

    # a model whose own code (auto_map) builds its language model from the sub-config generates with that eos
    # (InfiMM/infimm-zephyr: Flamingo over a MistralForCausalLM made from config.json's `language`)
    custom = tmp_path / "infimm-zephyr"
    custom.mkdir()
    language = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "bos_token_id": 1, "eos_token_id": 2}
    config = {"architectures": ["InfiMMZephyrModel"], "model_type": "infimm-zephyr", "language": language}
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "generation_config.json").write_text('{"do_sample": true, "max_new_tokens": 512}')
    assert [f.location.pointer for f in _findings(str(custom), "SRV002")] == ["/language/eos_token_id"]
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_infimm_zephyr.InfiMMZephyrModel"}
    (custom / "config.json").write_text(json.dumps(config))
    assert _findings(str(custom), "SRV002") == []

    (gguf,) = _findings(os.path.join(FIXTURES, "SRV002/bad/orpheus-gguf-eos-eot"), "SRV002")
    assert gguf.evidence == {"end_of_speech": speech_end, "stop_ids": [eot]}
    assert gguf.fix.applicability is Applicability.DISPLAY_ONLY
    assert f"tokenizer.ggml.eos_token_id=int:{speech_end}" in gguf.fix.title


def test_stop_ids_in_code_judged_by_the_published_layout_the_file_hard_codes(tmp_path) -> None:
    # orpheus-speech 0.1.0 (canopyai/Orpheus-TTS#76): the prompt uses Orpheus's published ids, the stop id defaults to
    # 49158, an id of the small models' layout; the default serves only this call, so adding 128258 to it is safe
    engine_dir = os.path.join(FIXTURES, "SRV002/bad/orpheus-vllm-stop-default-49158")
    (default,) = _findings(engine_dir, "SRV002")
    assert default.evidence == {"stop_ids": [49158], "end_of_speech": 128258, "witness": 128259}
    assert (default.location.line, default.location.column) == (25, 28)  # the call's argument, where vLLM gets it
    assert "the default of tokens()'s parameter at line 20" in default.message
    assert "49158 is a text token of its base" in default.message
    (edit,) = default.fix.edits
    assert default.fix.applicability is Applicability.SAFE and edit.text == "[49158, 128258]"
    with open(os.path.join(engine_dir, "engine.py"), encoding="utf-8") as fh:
        assert fh.read()[edit.start : edit.end] == "[49158]"  # the default's literal, not the call's name

    # a name the prompt also uses (END_OF_TEXT = 128009): changing it would change the prompt, so display only
    (named,) = _findings(os.path.join(FIXTURES, "SRV002/bad/orpheus-generate-eos-eot"), "SRV002")
    assert named.evidence["stop_ids"] == [128009] and "'<|eot_id|>' there" in named.message
    assert named.fix.applicability is Applicability.DISPLAY_ONLY and "generate() stops only" in named.message
    for good in ("orpheus-vllm-stop-end-of-speech", "orpheus-vllm-stop-end-of-ai", "orpheus-small-model-own-stop",
                 "text-llm-stop-ids"):  # fmt: skip
        assert _findings(os.path.join(FIXTURES, "SRV002/good", good), "SRV002") == [], good

    head = 'from vllm import LLM, SamplingParams\nllm = LLM(model="canopylabs/orpheus-3b-0.1-ft")\n'
    cases = {
        # a parameter the function uses twice: its default is not only this call's
        "def speak(p, stop_ids=[128009]):\n    print(stop_ids)\n    x = [128259]\n"
        "    return SamplingParams(max_tokens=1200, stop_token_ids=stop_ids)\n": Applicability.DISPLAY_ONLY,
        # written in the call: an int becomes a list
        "x = [128259]\nparams = SamplingParams(max_tokens=1200, stop_token_ids=128009)\n": Applicability.SAFE,
    }
    for body, applicability in cases.items():
        (tmp_path / "serve.py").write_text(head + body)
        (finding,) = _findings(tmp_path / "serve.py", "SRV002")
        assert finding.fix.applicability is applicability and finding.evidence["stop_ids"] == [128009]
    # a voice assistant: a chat LLM's call stops on <|eot_id|>, rightly; only the call whose prompt is built from
    # Orpheus ids (in its own function, or in one it calls) is judged
    (tmp_path / "serve.py").write_text(
        head + "def chat(p):\n    return SamplingParams(max_tokens=512, stop_token_ids=[128009])\n\n\n"
        "def prompt(t):\n    return [128259, *t, 128009, 128260, 128261, 128257]\n\n\n"
        "def speak(t):\n    p = prompt(t)\n    return SamplingParams(max_tokens=1200, stop_token_ids=[128009])\n"
    )
    (speak,) = _findings(tmp_path / "serve.py", "SRV002")
    assert speak.location.line == 13 and speak.evidence["witness"] == 128259
    for body in (
        # no id of the published layout in the file: the model may be of another layout
        "params = SamplingParams(max_tokens=1200, stop_token_ids=[128009])\n",
        # ids looked up in the tokenizer, or not all literal: not judged
        "x = [128259]\nparams = SamplingParams(max_tokens=1200, stop_token_ids=[tok.eos_token_id, 128009])\n",
        "x = [128259]\nparams = SamplingParams(max_tokens=1200, stop_token_ids=ids)\n",
    ):
        (tmp_path / "serve.py").write_text(head + body)
        assert _findings(tmp_path / "serve.py", "SRV002") == [], body


def test_parameter_default() -> None:
    fn = ast.parse("def f(a, /, b=1, *args, c, d=[2], **kw): pass").body[0]
    got = {name: parameter_default(fn, name) for name in ("a", "b", "c", "d", "kw")}
    assert ast.unparse(got["b"]) == "1" and ast.unparse(got["d"]) == "[2]"
    assert got["a"] is None and got["c"] is None and got["kw"] is None
    assert parameter_default(ast.parse("x = 1"), "x") is None


def test_gguf_token_types_and_chat_template() -> None:
    found = _findings(os.path.join(FIXTURES, "SRV004/bad/orpheus-gguf-normal-tokens-chat-template"), "SRV004")
    by_pointer = {f.location.pointer: f for f in found}
    assert set(by_pointer) == {"/tokenizer.ggml.token_type", "/tokenizer.chat_template"}
    assert by_pointer["/tokenizer.ggml.token_type"].evidence["token"] == "<custom_token_2>"
    assert by_pointer["/tokenizer.ggml.token_type"].evidence["type"] == 1
    assert by_pointer["/tokenizer.chat_template"].evidence["family"] == "Orpheus"


def test_csm_heads_beyond_mimi() -> None:
    (finding,) = _findings(os.path.join(FIXTURES, "COD005/bad/csm-2051-way-heads"), "COD005")
    # 2051-way heads, 2048 Mimi codes, pad 2050 declared: 2048 and 2049 are left
    assert finding.evidence == {"vocab_size": 2051, "codebook_size": 2048, "undeclared": [2048, 2049]}


def test_csm_is_read_with_its_own_vocabulary_names(tmp_path) -> None:
    # transformers' CsmForConditionalGeneration: text ids (bos 128000, pad 128002) index embed_text_tokens
    # (text_vocab_size rows); vocab_size 2051 and lm_head are the first audio codebook's, the depth decoder's
    # embed_tokens holds every codebook (32 x 2051 rows). None of it is a text vocabulary mismatch.
    import numpy as np
    from safetensors.numpy import save_file

    model = tmp_path / "csm-1b"
    shutil.copytree(os.path.join(FIXTURES, "COD005/bad/csm-2051-way-heads"), model)
    config = json.loads((model / "config.json").read_text())
    config["audio_vocab_size"] = 2051  # the original Sesame checkpoint's name for it, kept in its hub config
    (model / "config.json").write_text(json.dumps(config))
    tensors = {
        "embed_text_tokens.weight": np.zeros((128256, 2), "float16"),
        "depth_decoder.model.embed_tokens.weight": np.zeros((32 * 2051, 2), "float16"),
        "lm_head.weight": np.zeros((2051, 2), "float16"),
    }
    save_file(tensors, str(model / "model.safetensors"))
    found = [(f.rule_id, f.evidence) for f in engine.run(ALL_RULES, discover([str(model)])).findings]
    assert found == [("COD005", {"audio_vocab_size": 2051, "codebook_size": 2048, "undeclared": [2048, 2049]})]
    config["text_vocab_size"] = 128000  # now the text ids do reach past the text table
    (model / "config.json").write_text(json.dumps(config))
    os.remove(model / "model.safetensors")
    rules = {f.rule_id for f in engine.run(ALL_RULES, discover([str(model)])).findings}
    assert "TOK003" in rules


def test_family_sampling_fix_raises_the_literal_in_place(tmp_path) -> None:
    import shutil
    import subprocess
    import sys

    shutil.copy(os.path.join(FIXTURES, "SRV003/bad/orpheus-generate-penalty-1.0/infer.py"), tmp_path / "infer.py")
    before = (tmp_path / "infer.py").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "ttsdoctor", "fix", "--apply", "--select", "SRV003", str(tmp_path / "infer.py")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    after = (tmp_path / "infer.py").read_text()
    assert after == before.replace("repetition_penalty=1.0,", "repetition_penalty=1.1,")
    assert _findings(tmp_path / "infer.py", "SRV003") == []


def test_gguf_padded_to_vocab_size_beside_its_tokenizer_is_not_a_mismatch(tmp_path) -> None:
    """convert_hf_to_gguf.py pads the token list to vocab_size with [PAD{i}]: ids past tokenizer.json are expected.
    One token renamed at a shared id is reported with both names."""
    import sys

    import numpy as np
    from gguf import GGUFWriter

    sys.path.insert(0, FIXTURES)
    from _make import orpheus_tokenizer, write_tokenizer

    tok = orpheus_tokenizer()
    names = [t for t, _ in sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])]
    for case, tokens in (("padded", [*names, *(f"[PAD{i}]" for i in range(len(names), 384))]),
                         ("renamed", [*names[:-1], "<custom_token_x>"])):  # fmt: skip
        folder = tmp_path / case
        folder.mkdir()
        writer = GGUFWriter(str(folder / "model.gguf"), "llama")
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(tokens)
        writer.add_token_types([1] * len(tokens))
        writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        write_tokenizer(str(folder), tok)
        found = _findings(str(folder), "SRV005")
        if case == "padded":
            assert found == []
        else:
            assert len(found) == 1 and found[0].evidence["differing"] == 1
            last = len(names) - 1
            assert f"{last}: '<custom_token_x>' in the GGUF, {names[-1]!r} in tokenizer.json" in found[0].message


def test_vllm_omni_stage_budgets(tmp_path) -> None:
    """The speech-token stage of a vLLM-Omni config: no max_tokens is vLLM's 16 tokens, a short one is fixed in
    place (YAML or JSON); null (no limit), generation stages and families outside the registry are left alone."""
    (missing,) = _findings(os.path.join(FIXTURES, "SRV001/bad/vllm-omni-cosyvoice-no-sampling-params"), "SRV001")
    assert missing.evidence["budget_tokens"] == 16 and "0.64 s of audio at 25 tokens per second" in missing.message
    assert missing.location.pointer == "/stage_args/0/engine_args/model_arch" and missing.location.line == 11
    assert missing.fix.applicability is Applicability.DISPLAY_ONLY and "max_tokens: 750" in missing.fix.title

    (short,) = _findings(os.path.join(FIXTURES, "SRV001/bad/vllm-omni-cosyvoice-200-max-tokens"), "SRV001")
    assert short.location.pointer == "/stage_args/0/default_sampling_params/max_tokens"
    assert short.evidence == {"budget_tokens": 200, "seconds": 8.0}
    (edit,) = short.fix.edits
    assert isinstance(edit, SetYamlValue) and edit.value == 750 and short.fix.applicability is Applicability.SAFE

    stage = {
        "stage_id": 0,
        "engine_args": {"model_arch": "ChatterboxT3ForGeneration", "worker_type": "ar"},
        "default_sampling_params": {"max_tokens": 100},
    }
    cases = {
        "json-short": ({"stage_args": [stage]}, 1),
        "null-budget": ({"stage_args": [{**stage, "default_sampling_params": {"max_tokens": None}}]}, 0),
        "generation-stage": (
            {"stage_args": [{**stage, "engine_args": {"model_arch": "ChatterboxT3ForGeneration"}}]},
            0,
        ),
        "unknown-family": (
            {"stage_args": [{**stage, "engine_args": {"model_arch": "Qwen3OmniMoe", "worker_type": "ar"}}]},
            0,
        ),
        "not-a-stage-list": ({"stage_args": {"0": stage}}, 0),
    }
    for name, (doc, count) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        found = _findings(path, "SRV001")
        assert len(found) == count, (name, [f.message for f in found])
        if found:
            assert isinstance(found[0].fix.edits[0], SetJsonValue) and "4.0 s of audio" in found[0].message


def test_option_defaults_name_the_model_a_script_runs_without_arguments(tmp_path) -> None:
    """argparse options (long name with dashes, dest=, positional) and dataclass fields give their string default
    by the attribute they are read as; a name with two different defaults gives none. The family of a script that
    loads `args.model` is the one its default names, when no literal names one."""
    from ttsdoctor.artifacts.source import load_source
    from ttsdoctor.checks.serving import loaded_model_defaults, loaded_models, option_defaults, source_family

    script = tmp_path / "infer.py"
    script.write_text(
        "import argparse\nfrom dataclasses import dataclass, field\n"
        "from transformers import AutoModelForCausalLM\n\n"
        "@dataclass\nclass ModelArguments:\n"
        '    llm_model_name_or_path: str = field(default="meta-llama/Llama-3.2-1B-Instruct")\n'
        '    cache_dir: str = "./cache"\n\n'
        "parser = argparse.ArgumentParser()\n"
        'parser.add_argument("--model-path", "-m", default="canopylabs/orpheus-3b-0.1-ft")\n'
        'parser.add_argument("-o", "--out", dest="output_file", default="out.wav")\n'
        'parser.add_argument("text", default="Hello")\n'
        'parser.add_argument("--voice", default="tara")\n'
        'parser.add_argument("--voice", default="leah")\n'
        'parser.add_argument("--steps", default=3)\n'
        "args = parser.parse_args()\n"
        "model = AutoModelForCausalLM.from_pretrained(args.model_path)\n"
    )
    source = load_source(str(script))
    assert option_defaults(source) == {
        "llm_model_name_or_path": "meta-llama/Llama-3.2-1B-Instruct",
        "cache_dir": "./cache",
        "model_path": "canopylabs/orpheus-3b-0.1-ft",
        "output_file": "out.wav",
        "text": "Hello",
    }
    assert loaded_models(source) == [] and loaded_model_defaults(source) == ["canopylabs/orpheus-3b-0.1-ft"]
    facts = source_family(source)
    assert facts is not None and facts.family == "Orpheus"
