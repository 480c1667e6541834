"""Source rules on code as people write it: receivers traced through the module, notebooks, newer grammar."""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap

import pytest
from conftest import ROOT, run_main

from ttsdoctor import engine, report
from ttsdoctor.discover import discover
from ttsdoctor.registry import ALL_RULES


def _check(tmp_path, name: str, code: str, select: str | None = None) -> list:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    findings = engine.run(ALL_RULES, discover([str(path)])).findings
    return [f for f in findings if select is None or f.rule_id == select]


HF_HEAD = """
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("m")
model = AutoModelForCausalLM.from_pretrained("m").to("cuda")
"""

GENERATE_CASES = {
    # name: (code, expected severity of GEN002 or None)
    "vllm": ("from vllm import LLM\nllm = LLM(model='m')\nout = llm.generate(prompts, params)\n", None),
    "llama-cpp": ("from llama_cpp import Llama\nllm = Llama(model_path='m.gguf')\nllm.generate(tokens)\n", None),
    "tts-library": (
        "from chatterbox.tts import ChatterboxTTS\nmodel = ChatterboxTTS.from_pretrained(device='cuda')\n"
        "wav = model.generate(text, audio_prompt_path='ref.wav')\n",
        None,
    ),
    "text-argument-unknown-receiver": ("def f(model):\n    return model.generate('Hello there')\n", None),
    "padded-batch": (
        HF_HEAD + "enc = tokenizer(texts, padding=True, return_tensors='pt')\nout = model.generate(enc.input_ids)\n",
        "warning",
    ),
    "padded-batch-pad-is-eos": (
        HF_HEAD
        + "tokenizer.pad_token = tokenizer.eos_token\n"
        + "enc = tokenizer(texts, padding=True, return_tensors='pt')\nout = model.generate(enc.input_ids)\n",
        "error",
    ),
    "padded-batch-pad-eos-in-call": (
        HF_HEAD
        + "enc = tokenizer(['a', 'b'], padding='longest', return_tensors='pt')\n"
        + "out = model.generate(enc['input_ids'], pad_token_id=tokenizer.eos_token_id)\n",
        "error",
    ),
    "pad-is-eos-only-in-a-guarded-fallback": (
        HF_HEAD
        + "if tokenizer.pad_token is None:\n    tokenizer.pad_token = tokenizer.eos_token\n"
        + "enc = tokenizer(texts, padding=True, return_tensors='pt')\nout = model.generate(enc.input_ids)\n",
        "warning",
    ),
    "single-chat-template": (
        HF_HEAD
        + "tokenizer.pad_token = tokenizer.eos_token\n"
        + "ids = tokenizer.apply_chat_template(chat, return_tensors='pt')\nout = model.generate(ids)\n",
        "info",
    ),
    "tokenizer-output-kwargs": (
        HF_HEAD + "inputs = tokenizer(texts, padding=True, return_tensors='pt').to('cuda')\n"
        "out = model.generate(**inputs)\n",
        None,
    ),
    "generation-settings-kwargs": (
        HF_HEAD + "gen_kwargs = {'max_new_tokens': 64, 'do_sample': True}\n"
        "enc = tokenizer(texts, padding=True, return_tensors='pt')\n"
        "out = model.generate(enc.input_ids, **gen_kwargs)\n",
        "warning",
    ),
    "unknown-kwargs": (
        HF_HEAD + "enc = tokenizer(texts, padding=True, return_tensors='pt')\n"
        "out = model.generate(enc.input_ids, **build())\n",
        "info",
    ),
    "unsloth-tuple": (
        "from unsloth import FastLanguageModel\n"
        "model, tokenizer = FastLanguageModel.from_pretrained('unsloth/orpheus-3b-0.1-ft')\n"
        "enc = tokenizer(['a', 'b'], padding=True, return_tensors='pt')\nmodel.generate(enc.input_ids)\n",
        "warning",
    ),
    "self-attribute": (
        "from transformers import AutoModelForCausalLM\n"
        "class TTS:\n"
        "    def __init__(self):\n        self.model = AutoModelForCausalLM.from_pretrained('m')\n"
        "    def run(self, loader):\n"
        "        for batch in loader:\n            yield self.model.generate(batch['input_ids'])\n",
        "warning",
    ),
    "parameter-receiver": ("def run(model, ids):\n    return model.generate(ids)\n", "info"),
    "whisper-audio-features": (  # duncan-G/CogniVault: log-mel features carry no pad token to infer a mask from
        "from transformers import WhisperForConditionalGeneration\n"
        "model = WhisperForConditionalGeneration.from_pretrained('openai/whisper-small')\n"
        "def transcribe(processor, audio):\n"
        "    input_features = processor(audio, sampling_rate=16000, return_tensors='pt').input_features\n"
        "    return model.generate(inputs=input_features)\n",
        None,
    ),
    "token-ids-named-features": (
        HF_HEAD + "features = tokenizer(texts, padding=True, return_tensors='pt').input_ids\n"
        "out = model.generate(features)\n",
        "warning",
    ),
    "audio-features-from-a-batch": (
        "def run(model, loader):\n    for batch in loader:\n        yield model.generate(batch['input_features'])\n",
        None,
    ),
    "one-text-padded-to-its-longest": (  # Eric-is-good/pretrain-LLM-from-scratch: padding=True on one prompt
        HF_HEAD + "prompt = '<|im_start|>user\\n{q}<|im_end|>\\n'\n"
        "enc = tokenizer(prompt.format(q='hi'), padding=True, return_tensors='pt')\n"
        "out = model.generate(enc.input_ids)\n",
        "info",
    ),
    "one-text-padded-to-max-length": (  # max_length pads even one text
        HF_HEAD + "enc = tokenizer('hi', padding='max_length', max_length=32, return_tensors='pt')\n"
        "out = model.generate(enc.input_ids)\n",
        "warning",
    ),
    "module-global-set-at-startup": (  # Kani-TTS's server: `generator = None`, then `global generator` in a hook
        "generator = None\n"
        "def startup():\n    global generator\n    generator = make()\n"
        "def speak(ids):\n    return generator.generate(ids)\n",
        "info",
    ),
}


@pytest.mark.parametrize("name", sorted(GENERATE_CASES))
def test_generate_receivers_and_prompts_are_traced(tmp_path, name: str) -> None:
    code, expected = GENERATE_CASES[name]
    found = _check(tmp_path, "infer.py", code, "GEN002")
    assert [f.severity.value for f in found] == ([expected] if expected else []), [f.message for f in found]
    if expected == "info":
        assert "(" in found[0].message  # says why it is only info
    if name == "module-global-set-at-startup":
        assert "generator is None where it is assigned in this scope" in found[0].message


def test_comments_and_docstrings_never_escalate(tmp_path) -> None:
    code = '''
    """Training used DataCollatorForLanguageModeling; labels[labels == tokenizer.pad_token_id] = -100."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained("m")
    tokenizer.pad_token = tokenizer.eos_token  # DataCollatorForLanguageModeling masks pad labels
    '''
    found = _check(tmp_path, "infer.py", code, "TOK002")
    assert [f.severity.value for f in found] == ["info"]


@pytest.mark.parametrize(
    ("masking", "guard", "expected"),
    [
        ("labels[input_ids == self.pad_token_id] = -100", "", "error"),
        ("attention_mask = (input_ids != tokenizer.pad_token_id).long()", "", "error"),
        ("collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)", "", "error"),
        # TRL's collator of that name pads the labels with -100 by length: the module trains, nothing masks by pad
        ("from trl import DataCollatorForLanguageModeling\ncollator = DataCollatorForLanguageModeling(0)", "", "info"),
        ("import trl\ncollator = trl.DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)", "", "info"),
        ("collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)", "", "info"),
        ("labels[input_ids == self.pad_token_id] = -100", "if tokenizer.pad_token is None:\n    ", "info"),
        ("trainer = Trainer(model=model, data_collator=DataCollatorForSeq2Seq(tokenizer))", "", "info"),
    ],
)
def test_pad_is_eos_severity_comes_from_the_tree(tmp_path, masking: str, guard: str, expected: str) -> None:
    code = f"tokenizer = load()\n{guard}tokenizer.pad_token = tokenizer.eos_token\n{masking}\n"
    found = _check(tmp_path, "train.py", code, "TOK002")
    assert [f.severity.value for f in found] == [expected], [f.message for f in found]


@pytest.mark.parametrize(("collator", "older"), [("", True), (", data_collator=DataCollatorForSeq2Seq(tok)", False)])
def test_sft_trainer_default_collator_names_the_trl_version(tmp_path, collator: str, older: bool) -> None:
    code = f"tok = load()\ntok.pad_token = tok.eos_token\ntrainer = SFTTrainer(model=m, train_dataset=d{collator})\n"
    found = _check(tmp_path, "sft.py", code, "TOK002")
    assert [f.severity.value for f in found] == ["info"]
    assert ("before it, transformers' DataCollatorForLanguageModeling masked every EOS" in found[0].message) is older


def test_generation_config_pad_reached_through_a_variable(tmp_path) -> None:
    code = "gen_cfg = model.generation_config\ngen_cfg.pad_token_id = gen_cfg.eos_token_id\n"
    assert [f.rule_id for f in _check(tmp_path, "gen.py", code, "TOK002")] == ["TOK002"]


def test_output_attentions_through_a_kwargs_dict(tmp_path) -> None:
    code = """
    def step(model, x):
        kwargs = dict(use_cache=True, output_attentions=True)
        return model(inputs_embeds=x, **kwargs)
    """
    found = _check(tmp_path, "t3.py", code, "ATT001")
    assert len(found) == 1 and found[0].location.line == 4 and "line 3" in found[0].message


def test_newer_grammar_is_info_and_python2_a_warning_never_exit_2(tmp_path) -> None:
    (tmp_path / "new.py").write_text('d = {"a": 1}\nprint(f"{d["a"]}")\n')
    (tmp_path / "old.py").write_text('print "hello"\n')
    (tmp_path / "ok.py").write_text("from transformers import AutoTokenizer\nt = AutoTokenizer.from_pretrained('m')\n")
    result = engine.run(ALL_RULES, discover([str(tmp_path)]))
    assert not result.unreadable
    by_file = {os.path.basename(f.location.path): (f.rule_id, f.severity.value) for f in result.findings}
    assert by_file == {"new.py": ("ART006", "info"), "old.py": ("ART006", "warning")}
    assert "3.12" in next(f.message for f in result.findings if f.location.path.endswith("new.py"))
    code, _ = run_main("check", str(tmp_path / "new.py"))
    assert code == 0


# --- notebooks ---------------------------------------------------------------------------------------------

NOTEBOOK = os.path.join(ROOT, "fixtures/GEN001/bad/colab-notebook-dict-config/orpheus_finetune.ipynb")


def _notebook(tmp_path, cells: list[list[str]]) -> str:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": i, "metadata": {}, "outputs": [], "source": src}
            for i, src in enumerate(cells, start=1)
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb, indent=1) + "\n")
    return str(path)


def test_notebook_cells_checked_with_cell_locations(tmp_path) -> None:
    path = _notebook(
        tmp_path,
        [
            ["%%capture\n", "!pip install unsloth \\\n", "    snac\n", "%env X=1"],
            ["from transformers import DataCollatorForLanguageModeling\n", "if True:\n", "    !nvidia-smi\n"],
            ["tokenizer.pad_token = tokenizer.eos_token\n", "c = DataCollatorForLanguageModeling(tokenizer)"],
            ["print f\n"],  # Python 2 in a cell: that cell only is skipped
            ['x = {"a": 1}\n', 'print(f"{x["a"]}")'],
        ],
    )
    result = engine.run(ALL_RULES, discover([str(tmp_path)]))
    rows = [(f.rule_id, f.severity.value, f.location.cell, f.location.line) for f in result.findings]
    assert rows == [
        ("TOK002", "error", 3, 1),
        ("ART006", "warning", 4, 1),
        ("ART006", "info", 5, 1),
    ], rows
    tok = result.findings[0]
    assert "cell 3, line 2 uses DataCollatorForLanguageModeling" in tok.message
    assert report.location_text(tok) == f"{path}:cell 3:1:1"
    assert report.finding_json(tok)["cell"] == 3 and report.finding_json(tok)["pointer"] == "/cells/2"
    # GitHub and SARIF point at the line of the .ipynb file that holds the cell's line
    file_lines = open(path).read().splitlines()
    assert "tokenizer.pad_token = tokenizer.eos_token" in file_lines[tok.location.file_line - 1]
    import io

    out = io.StringIO()
    report.write_github(result, out)
    assert f"line={tok.location.file_line}," in out.getvalue() and "cell 3, line 1: " in out.getvalue()
    sarif = report.sarif_payload(result)["runs"][0]["results"][0]
    assert sarif["locations"][0]["physicalLocation"]["region"]["startLine"] == tok.location.file_line
    assert sarif["properties"]["cell"] == 3 and sarif["properties"]["cellLine"] == 1


def test_notebook_suppression_in_a_cell(tmp_path) -> None:
    _notebook(tmp_path, [["tokenizer.pad_token = tokenizer.eos_token  # ttsdoctor: ignore[TOK002]\n"]])
    assert engine.run(ALL_RULES, discover([str(tmp_path)])).findings == []


def test_notebook_fix_changes_only_the_cell_sources(tmp_path) -> None:
    nb_dir = tmp_path / "nb"
    shutil.copytree(os.path.dirname(NOTEBOOK), nb_dir)
    path = nb_dir / os.path.basename(NOTEBOOK)
    before_text = path.read_text()
    before = json.loads(before_text)
    code, out = run_main("fix", str(nb_dir), "--apply", "--no-backups")
    assert code == 0, out
    after_text = path.read_text()
    after = json.loads(after_text)
    assert after["metadata"] == before["metadata"] and after["nbformat"] == before["nbformat"]
    changed = [i for i, (a, b) in enumerate(zip(before["cells"], after["cells"])) if a != b]
    assert changed == [2, 3]  # the import lands in the cell that imports; the call in its own cell
    for i in changed:  # outputs, ids and metadata of changed cells untouched
        assert {k: v for k, v in after["cells"][i].items() if k != "source"} == {
            k: v for k, v in before["cells"][i].items() if k != "source"
        }
    assert 'generation_config=GenerationConfig(**{"max_new_tokens": 1200' in "".join(after["cells"][3]["source"])
    # formatting kept: only the changed source lines differ from the original text
    import difflib

    diff = [d for d in difflib.ndiff(before_text.splitlines(), after_text.splitlines()) if d[:2] in ("- ", "+ ")]
    assert [d[:2] for d in diff] == ["+ ", "- ", "+ "], diff  # the import line added, the call line changed
    assert "from transformers import GenerationConfig" in diff[0]
    remaining = engine.run(ALL_RULES, discover([str(nb_dir)])).findings
    assert [f.rule_id for f in remaining] == ["GEN002"] and remaining[0].severity.value == "info"
    code, out = run_main("fix", str(nb_dir), "--apply", "--no-backups")
    assert path.read_text() == after_text  # idempotent


def test_hooks_cover_notebooks() -> None:
    with open(os.path.join(ROOT, ".pre-commit-hooks.yaml"), encoding="utf-8") as fh:
        patterns = re.findall(r"files: '(.*)'", fh.read())
    assert patterns and all(re.search(p, "notebooks/Orpheus_(3B)-TTS.ipynb") for p in patterns)
    assert [t.kind for t in discover(["notebooks/x.ipynb"], hook=True)] == []  # a deleted file
    assert [t.kind for t in discover([NOTEBOOK], hook=True)] == ["source"]


def test_generation_config_fix_keeps_meaning_and_runs_with_real_transformers(tmp_path) -> None:
    src = tmp_path / "infer.py"
    src.write_text(
        "base = {'max_new_tokens': 10}\n\n\n"
        "def run(model, ids):\n    return model.generate(ids, generation_config=dict(base, do_sample=False))\n"
    )
    code, out = run_main("fix", str(tmp_path), "--apply", "--no-backups", "--unsafe-fixes", "--select", "GEN001")
    assert code == 0, out
    fixed = src.read_text()
    assert "GenerationConfig(**base, do_sample=False)" in fixed
    namespace: dict = {}
    exec(compile(fixed, str(src), "exec"), namespace)  # the real transformers GenerationConfig

    class Model:
        def generate(self, ids, generation_config):
            return generation_config

    from transformers import GenerationConfig

    cfg = namespace["run"](Model(), [[1]])
    assert isinstance(cfg, GenerationConfig) and cfg.max_new_tokens == 10 and cfg.do_sample is False


def test_generation_config_fix_never_shadows_a_project_name(tmp_path) -> None:
    src = tmp_path / "infer.py"
    original = (
        "class GenerationConfig(dict):\n    pass\n\n\n"
        "def run(model, ids):\n    return model.generate(ids, generation_config={'max_new_tokens': 5})\n"
    )
    src.write_text(original)
    _, out = run_main("fix", str(tmp_path), "--apply", "--no-backups", "--unsafe-fixes", "--select", "GEN001")
    assert src.read_text() == original
    assert "already binds GenerationConfig (class GenerationConfig at line 1)" in out


@pytest.mark.parametrize(
    ("rule_id", "code", "outside"),
    [
        ("ATT002", "def stub(cfg):\n    cfg._attn_implementation = 'eager'\n", "warning"),
        # a tiny config with pad == eos on purpose (kadirnar/voicehub's tests): errors are info in tests too
        (
            "TOK002",
            "from transformers import LlamaConfig\n\nconfig = LlamaConfig(pad_token_id=2, eos_token_id=2)\n",
            "error",
        ),
    ],
)
def test_findings_in_test_code_are_info(tmp_path, rule_id: str, code: str, outside: str) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_stub.py").write_text(code)
    (tmp_path / "load.py").write_text(code)
    result = engine.run(ALL_RULES, discover([str(tmp_path)]))
    by_file = {os.path.basename(f.location.path): f for f in result.findings if f.rule_id == rule_id}
    assert by_file["load.py"].severity.value == outside
    assert by_file["test_stub.py"].severity.value == "info"
    assert by_file["test_stub.py"].message.endswith("(in test code)")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("google/gemma-2-9b-it", True),
        ("google/gemma-2b", False),  # the first Gemma, which has sdpa
        ("google/gemma-3-12b-it", True),  # sdpa exists; eager was transformers' advice for training
        ("google/gemma-3n-E4B-it", True),
        ("google/shieldgemma-2-4b-it", False),
        ("openai/gpt-oss-20b", True),
        ("nvidia/DeepSeek-V4-Flash-NVFP4", True),
        ("state-spaces/mamba-130m-hf", True),
        ("Zyphra/Zamba2-1.2B", False),
        ("suno/bark-small", True),
        ("facebook/mms-tts-eng", True),
        ("canopylabs/orpheus-3b-0.1-ft", False),
        ("HKUSTAudio/Llasa-1B", False),
        ("EleutherAI/gpt-neox-20b", False),
        ("EleutherAI/gpt-neo-1.3B", True),
    ],
)
def test_eager_expected_by_hub_name(name: str, expected: bool) -> None:
    from ttsdoctor.checks.attention import eager_expected

    assert eager_expected(name) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ('os.environ.get("MODEL_ID", "openai/gpt-oss-20b")', "openai/gpt-oss-20b"),
        ('os.getenv("MODEL", default="x/y")', "x/y"),
        ('environ.get("MODEL", "x/y")', "x/y"),
        ('getenv("MODEL", "x/y")', "x/y"),
        ('os.environ.get("MODEL_ID")', None),  # no default: nothing is known
        ('config.get("model", "x/y")', None),  # a dict's get, not the environment
        ('os.environ.get("MODEL", DEFAULT)', None),
    ],
)
def test_env_default_reads_the_default_of_an_environment_lookup(code: str, expected: str | None) -> None:
    import ast

    from ttsdoctor.checks.pysource import env_default

    assert env_default(ast.parse(code, mode="eval").body) == expected


def test_eager_only_table_matches_the_installed_transformers() -> None:
    """The table says which classes have no sdpa path; a sample of it, both ways, against transformers itself."""
    import transformers

    from ttsdoctor.checks.attention import EAGER_ONLY_TYPES

    sample = {
        "gemma2": "Gemma2PreTrainedModel",
        "gpt_oss": "GptOssPreTrainedModel",
        "bark": "BarkPreTrainedModel",
        "llama": "LlamaPreTrainedModel",
        "qwen2": "Qwen2PreTrainedModel",
        "gemma3": "Gemma3PreTrainedModel",
        "nemotron_h": "NemotronHPreTrainedModel",
    }
    for model_type, cls in sample.items():
        assert (model_type in EAGER_ONLY_TYPES) is (not getattr(transformers, cls)._supports_sdpa), model_type


def test_notebook_round_trip_keeps_every_cell_exactly() -> None:
    from ttsdoctor.artifacts import notebook

    cells = [
        "%%capture\n!pip install unsloth \\\n    snac\n%env X=1",
        " !tts --text 'hi' \\\n      --out_path out.wav",
        "if gpu:\n    !nvidia-smi\nelse:\n    %time x = 1\nfiles = !ls\nobj?",
        "%%bash\necho hi\n  indented",
        "print 'python 2'\n",
        'x = {"a": 1}\nprint(f"{x["a"]}")\n\n\n',
        # a docstring never closed (transformers docs' video_classification notebook), then a cell whose quotes
        # would close it in the joined text
        'def create_gif(video, filename="sample.gif"):\n    """Prepares a GIF from a video tensor.',
        'def display_gif(video):\n    """Displays a GIF."""\n    return create_gif(video)',
        # no-break spaces as indentation, pasted from a web page (diffusers' Korean docs)
        "images = pipeline(\n\xa0 \xa0 prompt='best quality',\n).images",
        # IPython's automagic: `pip install` without `%` runs (diffusers' community notebooks); `ls = [` stays Python
        "pip install diffusers torch\ncd ..\nls = [\n    1,\n]\nimport torch",
        # doctest prompts, which IPython strips (diffusers' Korean docs): not checked, but not a syntax error either
        '>>> from diffusers import DiffusionPipeline\n>>> pipe = DiffusionPipeline.from_pretrained("x")',
    ]
    nb = {"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": []} for c in cells]}
    virtual = notebook.build(nb)
    import ast

    ast.parse(virtual.text)  # whatever the cells hold, the virtual text parses
    back = notebook.split(virtual.text)
    assert [back[i + 1] for i in range(len(cells))] == [c.rstrip("\n") for c in cells]
    # each cell is judged alone, as Jupyter runs it: only the cells that do not parse here are skipped
    skipped = [i + 1 for i, cell in enumerate(virtual.cells) if cell.skipped is not None]
    assert skipped == [5, 6, 7, 9, 11], [(c.index + 1, c.skipped) for c in virtual.cells]
    assert "unterminated triple-quoted string" in (virtual.cells[6].skipped or "")
    assert "U+00A0" in (virtual.cells[8].skipped or "")
    assert virtual.cells[10].skipped == notebook.PROMPTED


def test_source_fix_on_a_file_with_a_byte_order_mark_keeps_its_offsets(tmp_path) -> None:
    src = tmp_path / "infer.py"
    body = "import torch\n\n\ndef run(model, ids):\n"
    body += "    return model.generate(ids, generation_config={'max_new_tokens': 5})\n"
    src.write_bytes("\ufeff".encode() + body.encode())
    code, out = run_main("fix", str(tmp_path), "--apply", "--no-backups", "--unsafe-fixes", "--select", "GEN001")
    assert code == 0, out
    fixed = src.read_bytes().decode("utf-8")
    assert fixed.startswith("\ufeffimport torch\nfrom transformers import GenerationConfig\n")
    assert "generation_config=GenerationConfig(**{'max_new_tokens': 5}))\n" in fixed
    compile(fixed[1:], str(src), "exec")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ('"""Doc."""\nfrom __future__ import annotations\n', '"""Doc."""\nfrom __future__ import annotations\nfrom x'),
        ('"""Doc."""\n', '"""Doc."""\nfrom x'),
        ("", "from x"),
        ("import os\r\nimport sys\r\n", "import os\r\nimport sys\r\nfrom x import Y\r\n"),
        ("from x import Y\n", "from x import Y\nz = 1"),  # already there: nothing added
        ("import os  # no newline", "import os  # no newline\nfrom x import Y\n"),
    ],
)
def test_add_import_lands_after_the_leading_imports(head: str, expected: str) -> None:
    from ttsdoctor.edits import add_import

    tail = "" if head.endswith("newline") else "z = 1"
    assert add_import(head + tail, "x", "Y").startswith(expected)


def test_a_deeply_chained_expression_does_not_crash_the_fix(tmp_path) -> None:
    src = tmp_path / "infer.py"
    src.write_text(
        "def run(model, ids):\n    return model.generate(ids, generation_config={'max_new_tokens': 5})\n\n\n"
        "x = " + " and ".join(["a"] * 8000) + "\n"
    )
    code, out = run_main("fix", str(tmp_path), "--unsafe-fixes", "--select", "GEN001")
    assert code == 1 and "GenerationConfig(**{'max_new_tokens': 5})" in out


def test_planning_many_fixes_in_one_file_applies_them_in_one_pass(tmp_path, monkeypatch) -> None:
    """200 inline dict configs: one combined application per file, not one per fix on top of the others."""
    from ttsdoctor import edits, fixer

    lines = ["from transformers import AutoModelForCausalLM", "model = AutoModelForCausalLM.from_pretrained('m')"]
    lines += [
        f"def f{i}(x):\n    return model.generate(x, generation_config={{'max_new_tokens': {i + 1}}})\n"
        for i in range(200)
    ]
    (tmp_path / "infer.py").write_text("\n".join(lines))
    findings = engine.run(ALL_RULES, discover([str(tmp_path)])).findings
    calls = []
    real = edits.apply_text
    monkeypatch.setattr(fixer, "apply_text", lambda *a: calls.append(a[0]) or real(*a))
    planned = fixer.plan(findings)
    assert len(planned.fixes) == 200 and len(calls) == 1
    text = planned.texts[str(tmp_path / "infer.py")]
    assert text.count("GenerationConfig(**{") == 200 and text.count("from transformers import GenerationConfig") == 1


def test_a_fix_that_fails_in_combination_is_the_only_one_dropped(tmp_path) -> None:
    from ttsdoctor import fixer
    from ttsdoctor.finding import Applicability, Finding, Fix, Location, ReplaceSource, Severity

    path = str(tmp_path / "a.py")
    (tmp_path / "a.py").write_text("x = 1\ny = 2\n")

    def finding(start: int, end: int, text: str) -> Finding:
        edit = ReplaceSource(path, start, end, text)
        fix = Fix("t", Applicability.SAFE, (edit,))
        return Finding("GEN001", "dict-generation-config", Severity.ERROR, f"m{start}", Location(path), fix=fix)

    planned = fixer.plan([finding(4, 5, "10"), finding(10, 11, "(")])  # the second breaks the syntax
    assert planned.texts[path] == "x = 10\ny = 2\n" and len(planned.fixes) == 1
    assert "does not compile" in planned.skipped[0][1]


def test_names_defined_from_themselves_never_crash_a_rule(tmp_path) -> None:
    """Every rule on code whose names are built from themselves or from each other, the shape that once sent ENV003's
    string reading into endless recursion: each rule runs to the end (no internal error)."""
    script = tmp_path / "loops.py"
    script.write_text(
        textwrap.dedent(
            """\
            import argparse
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
            from vllm import LLM, SamplingParams

            parser = argparse.ArgumentParser()
            parser.add_argument("--model", default="canopylabs/orpheus-3b-0.1-ft", dest="model")
            args = parser.parse_args()
            path = "pretrained_models/Spark-TTS-0.5B"
            path = f"{path}/{path}/LLM"
            a = b = path
            b = a
            a = f"{b}{a}"
            dtype = torch.float16
            dtype = dtype if dtype else dtype
            cfg = GenerationConfig()
            cfg = cfg
            model = AutoModelForCausalLM.from_pretrained(a, torch_dtype=dtype).half()
            model = model.to(dtype)
            tokenizer = AutoTokenizer.from_pretrained(args.model)
            ids = tokenizer("hi", return_tensors="pt").input_ids
            ids = ids[:, :2048]
            out = model.generate(ids, generation_config=cfg, max_new_tokens=ids.shape[1] + 128258)
            llm = LLM(model=args.model, dtype=dtype)
            params = SamplingParams(max_tokens=params.max_tokens if False else 16)
            spark = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float16)
            """
        )
    )
    result = engine.run(ALL_RULES, discover([str(script)]))
    assert result.internal_errors == []
    assert [f.location.line for f in result.findings if f.rule_id == "ENV003"] == [26]


def test_output_attentions_behind_a_feature_flag_is_info_behind_a_capability_check_a_warning(tmp_path) -> None:
    """Whisper's generation (vendored by GLM-4-Voice) asks for attentions only when word timestamps are asked for:
    the feature needs them. Chatterbox's alignment analyzer sets them behind a hasattr() check: every time."""
    code = textwrap.dedent(
        """\
            def set_return_outputs(return_token_timestamps, generation_config):
                if return_token_timestamps:
                    generation_config.return_dict_in_generate = True
                    generation_config.output_attentions = True


            def analyzer(tfmr):
                if hasattr(tfmr, "config") and hasattr(tfmr.config, "output_attentions"):
                    tfmr.config._attn_implementation = "eager"
                    tfmr.config.output_attentions = True
            """
    )
    found = [(f.location.line, f.severity.value) for f in _check(tmp_path, "gen.py", code, "ATT001")]
    assert found == [(4, "info"), (10, "warning")], found


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import sys\nprep()\nquit()\ntrain()\n", (3, "quit()")),
        ("import sys\nprep()\nsys.exit(0)\ntrain()\n", (3, "sys.exit()")),
        ("prep()\nraise SystemExit('done')\ntrain()\n", (2, "raise SystemExit")),
        ("prep()\nsys.exit(main())\n", None),  # the last statement: nothing after it
        ("if ready:\n    quit()\ntrain()\n", None),  # conditional: what follows may run
        ("def main():\n    exit()\n    train()\nmain()\n", None),  # inside a function, not the script's end
    ],
)
def test_stops_at_finds_a_top_level_exit_with_code_after_it(tmp_path, code: str, expected) -> None:
    from ttsdoctor.artifacts.source import load_source

    path = tmp_path / "script.py"
    path.write_text(code)
    assert load_source(str(path)).stops_at == expected


def test_findings_after_a_top_level_quit_are_info(tmp_path) -> None:
    """A warning in code that does not run as the file stands (after a top-level quit()) is worth knowing only."""
    path = tmp_path / "serve.py"
    path.write_text(
        "from transformers import AutoModelForCausalLM\n"
        "print('prepared')\n"
        "quit()\n"
        "model = AutoModelForCausalLM.from_pretrained('canopylabs/orpheus-3b-0.1-ft', attn_implementation='eager')\n"
    )
    (finding,) = [f for f in engine.run(ALL_RULES, discover([str(path)])).findings if f.rule_id == "ATT002"]
    assert finding.severity.value == "info" and finding.message.endswith(
        "(after quit() at line 3: not run as the file stands)"
    )
    path.write_text(path.read_text().replace("quit()\n", ""))
    (finding,) = [f for f in engine.run(ALL_RULES, discover([str(path)])).findings if f.rule_id == "ATT002"]
    assert finding.severity.value == "warning"


def test_notebook_cell_with_doctest_prompts_is_info(tmp_path) -> None:
    """IPython strips `>>> ` prompts, so the cell runs: not checked (info), not a syntax error (warning)."""
    _notebook(tmp_path, [[">>> import torch\n", ">>> x = torch.ones(2)\n"], ["print 'python 2'\n"]])
    result = engine.run(ALL_RULES, discover([str(tmp_path)]))
    rows = [(f.rule_id, f.severity.value, f.location.cell) for f in result.findings]
    assert rows == [("ART006", "info", 1), ("ART006", "warning", 2)], rows
    assert "written with >>> prompts" in result.findings[0].message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from transformers import LlamaConfig\ncfg = LlamaConfig(pad_token_id=0, eos_token_id=0)\n", "error"),
        ("model = AutoModel.from_pretrained('m', pad_token_id=0, eos_token_id=0)\n", "error"),
        # yynil/RWKVTTS: the project's own batching function, nothing in the module masks by the pad id
        ("batch = process_batch(texts, tok, eos_token_id=0, pad_token_id=0)\n", "info"),
        (
            "batch = process_batch(texts, tok, eos_token_id=0, pad_token_id=0)\n"
            "labels[batch['input_ids'] == tok.pad_token_id] = -100\n",
            "error",
        ),
        # a config class's own defaults (Phi3Config: pad == eos == 32000), written out as xgen-mm's remote code does
        ("cfg = Phi3Config(pad_token_id=32000, eos_token_id=32000)\n", "info"),
        ("cfg = Phi3Config(pad_token_id=5, eos_token_id=5)\n", "error"),
        ("text_config = {'model_type': 'phi3', 'pad_token_id': 32000, 'eos_token_id': 32000}\n", "info"),
        ("text_config = {'model_type': 'llama', 'pad_token_id': 2, 'eos_token_id': 2}\n", "error"),
    ],
)
def test_pad_equal_to_eos_in_a_call_is_judged_by_what_the_call_is(tmp_path, code: str, expected: str) -> None:
    found = _check(tmp_path, "train.py", code, "TOK002")
    assert [f.severity.value for f in found] == [expected], [f.message for f in found]


def test_one_formatted_text_is_a_single_prompt_with_or_without_padding(tmp_path) -> None:
    # one helper, _is_text, decides "one string" for both tokenizer calls (padding=True pads nothing on one text)
    for padding in ("", ", padding=True"):
        code = (
            HF_HEAD + "prompt = '<|im_start|>user\\n{q}<|im_end|>\\n'\n"
            f"enc = tokenizer(prompt.format(q='hi'){padding}, return_tensors='pt')\n"
            "out = model.generate(enc.input_ids)\n"
        )
        (found,) = _check(tmp_path, "infer.py", code, "GEN002")
        assert found.severity.value == "info" and "a single text" in found.message, found.message


@pytest.mark.slow
def test_config_default_pad_eos_table_matches_installed_transformers() -> None:
    from transformers import CONFIG_MAPPING

    from ttsdoctor.checks.tokens import CONFIG_DEFAULT_PAD_EOS

    for model_type, (class_name, pad) in CONFIG_DEFAULT_PAD_EOS.items():
        config = CONFIG_MAPPING[model_type]()
        assert (type(config).__name__, config.pad_token_id, config.eos_token_id) == (class_name, pad, pad), model_type
