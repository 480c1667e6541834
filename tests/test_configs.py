"""Training configs and repository layouts as people have them: archives without .git, Hub ids, own reports."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import FIXTURES, ROOT, run_main

from ttsdoctor import engine
from ttsdoctor.artifacts.training_config import load_training_config
from ttsdoctor.discover import discover
from ttsdoctor.registry import ALL_RULES

AMHARIC = os.path.join(ROOT, "fixtures/ART003/good/paths-resolve-from-project-root")


def test_archive_without_git_resolves_paths_from_the_checked_folder(tmp_path) -> None:
    """A repository downloaded as an archive has no .git: the folder given to `check` is a root too."""
    repo = tmp_path / "Amharic_chatterbox-TTS-main"
    shutil.copytree(AMHARIC, repo)
    for marker in (".git", "pyproject.toml", "setup.py", "setup.cfg", "requirements.txt"):
        path = repo / marker
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    findings = engine.run(ALL_RULES, discover([str(repo)])).findings
    assert [f for f in findings if f.rule_id in ("ART003", "SEC004")] == []


def test_hub_ids_are_remote_references_not_missing_files(tmp_path) -> None:
    (tmp_path / "config.yaml").write_text(
        "model_name_or_path: canopylabs/orpheus-3b-0.1-pretrained\ntokenizer_name: HKUSTAudio/Llasa-1B\n"
        "tokenizer: models/tokenizer/merged.json\nlearning_rate: 1.0e-4\n"
    )
    findings = [f for f in engine.run(ALL_RULES, discover([str(tmp_path)])).findings if f.rule_id == "ART003"]
    assert [f.evidence["value"] for f in findings] == ["models/tokenizer/merged.json"]
    assert findings[0].severity.value == "info"  # no models/ folder here at all: made by a setup step


def test_paths_a_flag_switches_off_or_that_climb_out_of_the_tree(tmp_path) -> None:
    """coqui's recipes name `../../speakers-vctk-en.json` beside `use_external_speaker_embedding_file: false`
    (DrewThomasson/Universal_TTS_Finetune): never read, so never missing; and `../..` from the top of the tree is
    not looked up there, nor is the folder it reaches listed in a message."""
    good = os.path.join(FIXTURES, "ART003/good/coqui-speaker-file-switched-off")
    repo = tmp_path / "a" / "Universal_TTS_Finetune-main"
    shutil.copytree(good, repo)
    (tmp_path / "private-notes.json").write_text("{}")  # what `../..` from the tree's top reaches
    config = repo / "recipes" / "vctk" / "tacotron2-DDC" / "tacotron2-DDC.json"
    assert [f for f in engine.run(ALL_RULES, discover([str(repo)])).findings if f.rule_id == "ART003"] == []
    config.write_text(config.read_text().replace('"use_external_speaker_embedding_file": false', '"x": 1'))
    (repo / "recipes" / "speakers-vctk-de.json").unlink()
    (found,) = [f for f in engine.run(ALL_RULES, discover([str(repo)])).findings if f.rule_id == "ART003"]
    assert found.severity.value == "info" and "private-notes" not in found.message
    tried = [os.path.abspath(p) for p in found.evidence["tried"]]
    assert tried == [str(repo / "recipes" / "speakers-vctk-en.json")]  # not tmp_path's, reached from the top


def test_locale_files_are_not_configs_and_windows_paths_are_another_machines(tmp_path) -> None:
    locale = tmp_path / "i18n" / "locale"
    locale.mkdir(parents=True)  # daswer123/xtts-webui: training words inside sentences, not keys
    (locale / "pt_BR.json").write_text('{"Number of epochs:": "Numero de epochs:", "Upload .txt files": "Enviar .txt"}')
    (tmp_path / "lora.yaml").write_text("base_model: E:/JetBrains/Pycharm/Qwen3-TTS-Fine/models/Base\nepochs: 3\n")
    targets = discover([str(tmp_path)])
    assert [os.path.basename(t.path) for t in targets if t.kind == "training_config"] == ["lora.yaml"]
    (found,) = [f for f in engine.run(ALL_RULES, targets).findings if f.rule_id == "ART003"]
    assert found.evidence["tried"] == ["E:/JetBrains/Pycharm/Qwen3-TTS-Fine/models/Base"]
    assert "an absolute path of another machine?" in found.message


def test_placeholder_paths_are_called_placeholders(tmp_path) -> None:
    # VoxCPM's fine-tuning configs ship `pretrained_path: /path/to/VoxCPM1.5/` for the user to fill in
    (tmp_path / "finetune.yaml").write_text(
        "pretrained_path: /path/to/VoxCPM1.5/\nvocab_file: your_vocab.txt\n"
        "tokenizer_path: /data/run3/tokenizer.json\nnum_epochs: 3\n"
    )
    found = [f for f in engine.run(ALL_RULES, discover([str(tmp_path)])).findings if f.rule_id == "ART003"]
    hints = {f.evidence["value"]: f.message.split("; ")[1].split(")")[0] for f in found}
    assert hints == {
        "/path/to/VoxCPM1.5/": "a placeholder to fill in",
        "your_vocab.txt": "a placeholder to fill in",
        "/data/run3/tokenizer.json": "an absolute path of another machine?",
    }


def test_reports_and_baselines_are_never_read_as_configs(tmp_path) -> None:
    model = tmp_path / "model"
    shutil.copytree(os.path.join(ROOT, "fixtures/TOK001/bad/outetts-pad-eos-0"), model)
    run_main("check", str(tmp_path), "--format", "json", "-o", str(tmp_path / "report.json"))
    run_main("check", str(tmp_path), "--format", "sarif", "-o", str(tmp_path / "report.sarif"))
    run_main("check", str(tmp_path), "--write-baseline", str(tmp_path / "baseline.json"))
    targets = discover([str(tmp_path)])
    assert [t.kind for t in targets] == ["model_dir"]
    code, out = run_main("check", str(tmp_path / "report.json"))
    assert code == 2 and "not a kind of file ttsdoctor checks" in out


def test_baseline_survives_line_shifts_and_other_message_wording(tmp_path, monkeypatch) -> None:

    from ttsdoctor.checks import attention

    src = tmp_path / "t3.py"
    src.write_text("def step(model, x):\n    return model(x, output_attentions=True)\n")
    baseline = str(tmp_path / "baseline.json")
    run_main("check", str(src), "--write-baseline", baseline)
    assert "message" not in json.loads(open(baseline).read())["findings"][0]
    src.write_text("import os\n\n\n" + src.read_text())  # the finding moves down three lines
    # the message depends on the installed transformers: another environment words it differently
    monkeypatch.setattr(attention, "output_attentions_effect", lambda in_config: "another wording")
    code, out = run_main("check", str(src), "--baseline", baseline, "--format", "json")
    assert code == 0 and json.loads(out)["findings"] == []
    src.write_text(src.read_text() + "\ndef other(model, y):\n    return model(y, output_attentions=True)\n")
    code, out = run_main("check", str(src), "--baseline", baseline, "--format", "json")
    assert [f["line"] for f in json.loads(out)["findings"]] == [8]  # a new occurrence is new


def test_family_needs_more_than_one_token_and_can_be_set(tmp_path) -> None:
    from tokenizers import Tokenizer, models

    model = tmp_path / "tts"
    model.mkdir()
    vocab = {f"t{i}": i for i in range(200)}
    vocab.update({"<|audio_start|>": 200, **{f"<|audio_{i}|>": 201 + i for i in range(64)}})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.add_special_tokens(["<|audio_start|>"])
    tok.save(str(model / "tokenizer.json"))
    result = engine.run(ALL_RULES, discover([str(model)]))
    assert result.loaded[0].family is None  # one <|audio_start|> is not OuteTTS
    assert not [f for f in result.findings if f.rule_id == "COD003"]

    from ttsdoctor.settings import load_settings

    (tmp_path / "ttsdoctor.toml").write_text('[families]\n"tts" = "OuteTTS 0.2/0.3"\n')
    settings = load_settings(str(tmp_path / "ttsdoctor.toml"))
    result = engine.run(ALL_RULES, discover([str(model)]), settings)
    assert result.loaded[0].family.name == "OuteTTS 0.2/0.3"
    assert "families" in result.loaded[0].family_evidence
    cod = [f for f in result.findings if f.rule_id == "COD003"]
    assert cod and cod[0].severity.value == "error"  # the project said so: the expectation holds


def test_parent_relative_path_inside_the_checked_tree_is_read(tmp_path) -> None:
    """config/train.yaml naming ../models/... in a tree without project markers: inside what the user asked to
    check, so it is read (no SEC004), and the seed's numbers come out (887 declared, 2535 ids)."""
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "fixtures/VOC001/bad/chatterbox-amharic-887"), repo)
    (repo / "pyproject.toml").unlink()
    config = repo / "config" / "training_config.yaml"
    config.write_text(
        config.read_text().replace('"models/tokenizer"', '"../models/tokenizer/Am_tokenizer_merged.json"')
    )
    findings = engine.run(ALL_RULES, discover([str(repo)])).findings
    assert not [f for f in findings if f.rule_id == "SEC004"]
    voc = [f.message for f in findings if f.rule_id == "VOC001"]
    assert any("2535 ids" in m and "887" in m for m in voc), voc
    escape = tmp_path / "escape"
    escape.mkdir()
    (escape / "train.yaml").write_text("tokenizer: ../../../../../../../../../etc/passwd\nn_vocab: 10\n")
    assert [f.rule_id for f in engine.run(ALL_RULES, discover([str(escape)])).findings] == ["SEC004"]


def test_json5_training_config_is_read_as_its_loader_reads_it(tmp_path) -> None:
    """Amphion's exp_config.json files have // comments, trailing commas and unquoted keys and are read with json5:
    no invalid-JSON error, the values are read (one more key in a config really invalid still is an error)."""
    from ttsdoctor.artifacts.training_config import parse_training_config

    config = tmp_path / "exp_config.json"
    config.write_text(
        '{\n  "model_type": "HiFiGAN",\n  // Features used for model training\n  "preprocess": {\n'
        '    "sample_rate": 24000,\n    "n_mel": 100,\n  },\n  "mssbcqtd": {\n    hop_lengths: [512, 256, 256],\n'
        '    filters: 32,\n  },\n  "dataset": ["ljspeech", "vctk",],\n}\n'
    )
    parsed = parse_training_config(str(config))
    values = {e.pointer: e.value for e in parsed.entries}
    assert values["/preprocess/sample_rate"] == 24000 and values["/mssbcqtd/filters"] == 32
    assert values["/dataset/1"] == "vctk"
    assert parsed.notes and "JSON5" in parsed.notes[0]
    assert [e.line for e in parsed.entries if e.pointer == "/mssbcqtd/filters"] == [10]
    findings = engine.run(ALL_RULES, discover([str(config)])).findings
    assert [f for f in findings if f.severity.value == "error"] == []
    config.write_text('{\n  "sample_rate": 24000,\n  "n_mel": ,\n}\n')
    findings = engine.run(ALL_RULES, discover([str(config)])).findings
    assert [(f.rule_id, f.severity.value) for f in findings if "invalid JSON" in f.message] == [("ART001", "error")]


def test_a_repeated_yaml_key_is_read_as_yaml_safe_load_reads_it_and_weighed_by_its_loader() -> None:
    """ultravox's example config pastes its `train_sets` block twice: ruamel refused the file (an "invalid YAML"
    error on a file its own loader, yaml.safe_load, reads). The last value wins, as in PyYAML. A repeat with another
    value is an ART002 warning (the first is dead text); the same value twice is info, except in a Hydra config,
    which refuses any repeat; merge keys are not repeats."""
    from ttsdoctor.artifacts.training_config import parse_training_config

    bad = os.path.join(FIXTURES, "ART002/bad/yaml-repeated-key/train_config.yaml")
    parsed = parse_training_config(bad)
    assert parsed.data["optimizer"]["lr"] == 2.0e-4  # the last, as yaml.safe_load gives
    assert [e.line for e in parsed.entries if e.pointer == "/optimizer/lr"] == [19]
    assert [(line, column) for line, column, _ in parsed.problems] == [(10, 1), (19, 3)]
    assert "(lines 6 and 10), the same value both times" in parsed.problems[0][2]
    findings = engine.run(ALL_RULES, discover([bad])).findings
    assert [(f.rule_id, f.severity.value, f.location.line) for f in findings] == [
        ("ART002", "info", 10),
        ("ART002", "warning", 19),
    ]
    hydra = os.path.join(FIXTURES, "ART002/bad/hydra-repeated-key/train.yaml")
    findings = [f for f in engine.run(ALL_RULES, discover([hydra])).findings if f.rule_id == "ART002"]
    assert [(f.severity.value, f.location.line) for f in findings] == [("warning", 14)]
    good = parse_training_config(os.path.join(FIXTURES, "ART002/good/yaml-merge-key/train_config.yaml"))
    assert good.problems == [] and good.data["finetune"]["learning_rate"] == 5.0e-5


def test_json_training_configs_report_repeated_keys_by_what_json_load_reads(tmp_path) -> None:
    """A key given twice with two values is dead text (a warning: the first value is not the setting); the same
    value twice, and a NaN (Python's json reads it, as the training code does), are infos."""
    config = tmp_path / "train_config.json"
    config.write_text('{\n  "ga_alpha": 10.0,\n  "loss_masking": true,\n  "loss_masking": true,\n  "ga_alpha": 5.0,\n'
                      '  "best_loss": NaN\n}\n')  # fmt: skip
    findings = engine.run(ALL_RULES, discover([str(config)])).findings
    assert sorted((f.severity.value, f.message.split(":")[0]) for f in findings if f.rule_id == "ART002") == [
        ("info", "non-standard JSON constant NaN"),
        ("info", "repeated key 'loss_masking', with the same value both times"),
        ("warning", "duplicate key 'ga_alpha'"),
    ]


def test_pad_is_eos_in_an_input_encoder_subconfig_is_not_reported(tmp_path) -> None:
    # Ultravox (bhzhao19/ultravox-v0_6-llama-3_1-8b): a speech LLM whose audio_config is Whisper's full config,
    # pad == eos == 50257 as Whisper has it; only the encoder runs, so nothing ever pads or stops on those ids.

    whisper = {"model_type": "whisper", "bos_token_id": 50257, "eos_token_id": 50257, "pad_token_id": 50257}
    llama = {"model_type": "llama", "eos_token_id": 128009, "pad_token_id": 128009, "vocab_size": 128256}
    config = {"model_type": "ultravox", "audio_config": whisper, "text_config": llama, "vocab_size": 128256}
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, out = run_main("check", str(tmp_path), "--select", "TOK001", "--format", "json")
    reported = [f["message"] for f in json.loads(out)["findings"]]
    assert code == 1 and len(reported) == 1 and "(text_config)" in reported[0], (
        reported
    )  # the decoder's pad == eos still is


def test_home_paths_are_absolute_and_urls_are_not_files(tmp_path, monkeypatch) -> None:
    # verl's configs (in a Llasa GRPO repository): `path: ~/models/...` and Hydra's `searchpath: file://...`
    home = tmp_path / "home"
    (home / "models" / "Qwen2-7B-Instruct").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "ppo.yaml").write_text(
        "model:\n  path: ~/models/Qwen2-7B-Instruct\n  tokenizer_path: ~/models/deepseek-llm-7b-chat\n"
        "hydra:\n  searchpath: [file://verl/trainer/config, pkg://verl.trainer.config]\n"
        "train_files: s3://bucket/gsm8k/train.parquet\nnum_epochs: 3\n"
    )
    config = load_training_config(str(repo / "ppo.yaml"), checked_root=str(repo))
    named = {n.entry.value: n for n in config.named_files}
    assert set(named) == {"~/models/Qwen2-7B-Instruct", "~/models/deepseek-llm-7b-chat"}
    assert named["~/models/Qwen2-7B-Instruct"].resolved == str(home / "models" / "Qwen2-7B-Instruct")
    (found,) = [f for f in engine.run(ALL_RULES, discover([str(repo)])).findings if f.rule_id == "ART003"]
    assert found.evidence["tried"] == [str(home / "models" / "deepseek-llm-7b-chat")]
    assert "an absolute path of another machine?" in found.message


def test_translation_tables_sentences_and_run_folders_are_not_named_files(tmp_path) -> None:
    """GPT-SoVITS: tools/i18n/locale/*.json map "batch_size" to "batch_size" among sentences naming folders, and
    configs/s1mq.yaml / s2.json name the folders the run writes (`saving_path: ckpt/`, `s2_ckpt_dir: logs/...`)."""
    locale = tmp_path / "tools" / "i18n" / "locale"
    locale.mkdir(parents=True)
    (locale / "en_US.json").write_text(
        '{"batch_size": "batch_size", "GPT 训练: 模型权重文件在 GPT_weights/": "GPT Training: weights in GPT_weights/"}'
    )
    (tmp_path / "s1.yaml").write_text(
        "train:\n  batch_size: 8\n  saving_path: ckpt/\n  sampledir: logs/\n  s2_ckpt_dir: logs/s2/big2k1\n"
        "  help_path: 'Weights: see GPT_weights/'\n  pretrained_s1: pretrained/s1.ckpt\n"
    )
    (tmp_path / "outputs" / "tok").mkdir(parents=True)
    (tmp_path / "outputs" / "tok" / "tokenizer.json").write_text("{}")
    (tmp_path / "sft.yaml").write_text(
        "tokenizer_path: outputs/tok\nlearning_rate: 1.0e-4\nckpt: FunAudioLLM/CosyVoice-300M\n"
    )
    targets = discover([str(tmp_path)])
    assert sorted(os.path.basename(t.path) for t in targets if t.kind == "training_config") == ["s1.yaml", "sft.yaml"]
    found = [f for f in engine.run(ALL_RULES, targets).findings if f.rule_id == "ART003"]
    assert [f.evidence["value"] for f in found] == ["pretrained/s1.ckpt"]  # an input, still reported
    sft = load_training_config(str(tmp_path / "sft.yaml"), checked_root=str(tmp_path))
    named = {n.entry.value: n for n in sft.named_files}
    assert named["outputs/tok"].resolved is not None  # an earlier run's output that is here is still read
    assert named["FunAudioLLM/CosyVoice-300M"].remote  # a Hub id under `ckpt:`


def test_a_dangling_link_is_named_as_one(tmp_path) -> None:
    """925180034/text2Mol commits `models/MolT5-Large-Caption2SMILES -> /root/autodl-tmp/...`: the folder "holds" the
    name the config gives, so a near-miss warning listing it would contradict itself."""
    (tmp_path / "models").mkdir()
    os.symlink("/nonexistent-ttsdoctor/MolT5-Large", tmp_path / "models" / "MolT5-Large")
    (tmp_path / "other.bin").write_bytes(b"")
    (tmp_path / "train.yaml").write_text("molt5_checkpoint: models/MolT5-Large\nlearning_rate: 1.0e-4\n")
    (found,) = [f for f in engine.run(ALL_RULES, discover([str(tmp_path)])).findings if f.rule_id == "ART003"]
    assert found.severity.value == "info"
    assert found.evidence["points_to"] == "/nonexistent-ttsdoctor/MolT5-Large"
    assert "is a link to /nonexistent-ttsdoctor/MolT5-Large, which is not on this machine" in found.message


def test_pad_inside_an_eos_list_is_judged_by_the_tokenizer_eos(tmp_path) -> None:
    # Qwen2 instruct's generation_config.json (VITA-Audio ships it): pad <|endoftext|> inside the eos list
    # [<|im_end|>, <|endoftext|>]. With the tokenizer ending turns on <|im_end|> nothing learned is masked: info.
    # Without a tokenizer file it is a warning; with the tokenizer's eos being the pad, an error.

    gen = {"pad_token_id": 151643, "eos_token_id": [151645, 151643]}
    (tmp_path / "generation_config.json").write_text(json.dumps(gen))

    def tok001() -> list[dict]:
        _code, out = run_main("check", str(tmp_path), "--select", "TOK001", "--format", "json")
        return json.loads(out)["findings"]

    assert [f["severity"] for f in tok001()] == ["warning"]
    added = {
        "151643": {"content": "<|endoftext|>", "special": True},
        "151645": {"content": "<|im_end|>", "special": True},
    }
    tokenizer = {"added_tokens_decoder": added, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    (found,) = tok001()
    assert found["severity"] == "info" and "the tokenizer's eos is 151645" in found["message"], found
    tokenizer["eos_token"] = "<|endoftext|>"  # the tokenizer ends sequences with the pad: masked by a collator
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    assert {f["severity"] for f in tok001()} == {"error"}


def test_an_out_of_range_bos_id_is_a_warning_for_a_decoder_only_model(tmp_path) -> None:
    # generate() feeds a decoder-only model's config bos only when given no prompt; an encoder-decoder may start
    # every decoding from it, and a tokenizer's bos token is in every input: those stay errors.

    config = {"model_type": "gpt2", "vocab_size": 53, "bos_token_id": 50256, "eos_token_id": 51}
    (tmp_path / "config.json").write_text(json.dumps(config))

    def tok003() -> list[tuple[str, str]]:
        _code, out = run_main("check", str(tmp_path), "--select", "TOK003", "--format", "json")
        return [(f["severity"], f["pointer"]) for f in json.loads(out)["findings"]]

    assert tok003() == [("warning", "/bos_token_id")]
    (tmp_path / "config.json").write_text(json.dumps({**config, "eos_token_id": 50256}))
    assert tok003() == [("warning", "/bos_token_id"), ("error", "/eos_token_id")]
    (tmp_path / "config.json").write_text(json.dumps({**config, "is_encoder_decoder": True, "d_model": 8}))
    assert tok003() == []  # its ids live in the decoder's vocabulary: not judged against vocab_size at all


def test_a_bos_the_tokenizer_never_adds_differs_only_as_info(tmp_path) -> None:
    # OpenBMB's MiniCPM-o 4.5: tokenizer_config.json names <|im_start|> as bos with add_bos_token false, the
    # generation config keeps Qwen's <|endoftext|>. No encoding carries a bos and generate() feeds the generation bos
    # only without a prompt: info. A tokenizer.json template adds its tokens whatever add_bos_token says (checked on
    # transformers 5.23): then the mismatch is in every sequence, a warning.

    folder = tmp_path / "minicpm"
    shutil.copytree(os.path.join(FIXTURES, "TOK005/good/bos-named-but-never-added"), folder)

    def tok005() -> list[str]:
        _code, out = run_main("check", str(folder), "--select", "TOK005", "--format", "json")
        return [f["severity"] for f in json.loads(out)["findings"]]

    assert tok005() == ["info", "info"]
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    bos_id = next(t["id"] for t in tokenizer_json["added_tokens"] if t["content"] == "<|im_start|>")
    tokenizer_json["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [bos_id], "tokens": ["<|im_start|>"]}},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    assert tok005() == ["warning", "warning"]
    tokenizer_json["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    assert tok005() == ["info", "info"]
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["add_bos_token"]  # not said: older Llama tokenizers add it by default
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert tok005() == ["warning", "warning"]


def test_post_processor_specials() -> None:
    from ttsdoctor.artifacts.tokenizer import _post_specials

    bert = {"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}
    template = {"type": "TemplateProcessing", "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    assert _post_specials(None) == frozenset() and _post_specials({"type": "ByteLevel"}) == frozenset()
    assert _post_specials(bert) == {"[CLS]", "[SEP]"} and _post_specials(template) == {"<s>"}
    assert _post_specials({"type": "Sequence", "processors": [{"type": "ByteLevel"}, template]}) == {"<s>"}
    assert _post_specials({"type": "Sequence", "processors": [{"type": "Future"}]}) is None
    assert _post_specials({"type": "Future"}) is None


def test_special_tokens_map_beside_added_tokens_decoder_is_not_what_loads() -> None:
    # NuExtract's folder: tokenizer_config.json (with added_tokens_decoder) pads with <|endoftext|> and ends with
    # another token; its special_tokens_map.json says <|endoftext|> for both. transformers does not read the map
    # beside added_tokens_decoder, so pad == eos there is info; without added_tokens_decoder the map is what loads.

    def severities(name: str) -> dict[str, list[str]]:
        _code, out = run_main("check", os.path.join(FIXTURES, name), "--select", "TOK001,TOK005", "--format", "json")
        found: dict[str, list[str]] = {}
        for f in json.loads(out)["findings"]:
            found.setdefault(f["code"], []).append(f["severity"])
        return found

    assert severities("TOK001/good/special-map-unread-pad-eos") == {"TOK001": ["info"], "TOK005": ["info"]}
    assert severities("TOK001/bad/special-map-read-pad-eos") == {"TOK001": ["error"], "TOK005": ["warning"] * 2}


@pytest.mark.slow
def test_transformers_loads_the_special_tokens_the_fixtures_say() -> None:
    from transformers import AutoTokenizer

    unread = AutoTokenizer.from_pretrained(os.path.join(FIXTURES, "TOK001/good/special-map-unread-pad-eos"))
    assert (unread.eos_token, unread.pad_token) == ("<|im_end|>", "<|endoftext|>")
    read = AutoTokenizer.from_pretrained(os.path.join(FIXTURES, "TOK001/bad/special-map-read-pad-eos"))
    assert read.eos_token == read.pad_token == "<|endoftext|>"


def test_config_eos_that_generation_config_overrides_is_info(tmp_path) -> None:
    # NuExtract: config.json's eos <|endoftext|>, generation_config.json's and the tokenizer's another token.
    # generate() reads generation_config.json: info. Not for pad: config.json's pad_token_id is the embedding's
    # padding_idx, a row training never updates.

    folder = tmp_path / "nuextract"
    shutil.copytree(os.path.join(FIXTURES, "TOK005/good/config-eos-stale-generation-config-agrees"), folder)

    def tok005() -> list[tuple[str, str]]:
        _code, out = run_main("check", str(folder), "--select", "TOK005", "--format", "json")
        return [(f["severity"], f["pointer"]) for f in json.loads(out)["findings"]]

    assert tok005() == [("info", "/eos_token_id")]
    config = json.loads((folder / "config.json").read_text())
    tokenizer_pad = config["pad_token_id"]
    (folder / "config.json").write_text(json.dumps({**config, "pad_token_id": tokenizer_pad + 1}))
    assert sorted(tok005()) == [("info", "/eos_token_id"), ("warning", "/pad_token_id")]
    (folder / "generation_config.json").unlink()  # then generate() builds its config from config.json's eos
    assert ("warning", "/eos_token_id") in tok005()


@pytest.mark.slow
def test_generate_reads_the_generation_config_eos_and_config_pad_is_padding_idx() -> None:
    from transformers import AutoModelForCausalLM

    folder = os.path.join(FIXTURES, "TOK005/good/config-eos-stale-generation-config-agrees")
    with open(os.path.join(folder, "generation_config.json"), encoding="utf-8") as fh:
        generation_eos = json.load(fh)["eos_token_id"]
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
        config = json.load(fh)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert config["eos_token_id"] != generation_eos == model.generation_config.eos_token_id
    assert model.model.embed_tokens.padding_idx == config["pad_token_id"]


def test_generation_config_pad_is_eos_with_a_tokenizer_padding_otherwise_is_a_warning(tmp_path) -> None:
    # Salesforce's xgen-mm (BLIP-3) folder: generation_config.json pads with its eos 32000, the tokenizer with <pad>
    # 32011. Collators pad and mask with the tokenizer's pad, so no eos is masked: not the seed failure, an error,
    # but generate() still cannot infer a mask from it, a warning. A config.json pad == eos stays an error.
    added = {"32000": {"content": "<|endoftext|>", "special": True}, "32011": {"content": "<pad>", "special": True}}
    tokenizer = {"added_tokens_decoder": added, "eos_token": "<|endoftext|>", "pad_token": "<pad>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    (tmp_path / "generation_config.json").write_text(json.dumps({"pad_token_id": 32000, "eos_token_id": 32000}))

    def tok001() -> list[tuple[str, str]]:
        _code, out = run_main("check", str(tmp_path), "--select", "TOK001", "--format", "json")
        return sorted((os.path.basename(f["path"]), f["severity"]) for f in json.loads(out)["findings"])

    assert tok001() == [("generation_config.json", "warning")]
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "phi3", "pad_token_id": 32000, "eos_token_id": 32000})
    )
    assert tok001() == [("config.json", "error"), ("generation_config.json", "warning")]
    tokenizer["pad_token"] = "<|endoftext|>"  # the tokenizer pads with its eos: the seed failure
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    assert {severity for _path, severity in tok001()} == {"error"}


def test_infinity_in_a_toolkits_own_config_json_is_info(tmp_path) -> None:
    # a Coqui run folder's config.json: json.dump writes max_text_len = float("inf") as Infinity, and Coqui's loader
    # (Python's json) reads it back. In a transformers config.json, servers that parse it strictly refuse it.
    (tmp_path / "config.json").write_text('{"model": "vits", "max_text_len": Infinity}')

    def art002() -> list[str]:
        _code, out = run_main("check", str(tmp_path), "--select", "ART002", "--format", "json")
        return [f["severity"] for f in json.loads(out)["findings"]]

    assert art002() == ["info"]
    (tmp_path / "config.json").write_text('{"model_type": "llama", "rope_scaling_factor": Infinity}')
    assert art002() == ["warning"]
