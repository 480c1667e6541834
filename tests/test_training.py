"""TRN rules: the flow that finds an end-of-speech token sliced off (cases from LLaSA_training, unsloth's notebooks and
TRL, where the same slice is right or wrong), the budget in seconds, and hard-coded ids checked against a tokenizer
with the published Orpheus layout (full size, built here) and one without it."""

from __future__ import annotations

import json
import os

import pytest
from conftest import FIXTURES
from tokenizers import Tokenizer, models

from ttsdoctor import engine
from ttsdoctor.codecs import published_ids, serving_facts
from ttsdoctor.discover import discover
from ttsdoctor.finding import Severity
from ttsdoctor.registry import ALL_RULES


def _findings(path: str, rule: str) -> list:
    return [f for f in engine.run(ALL_RULES, discover([str(path)])).findings if f.rule_id == rule]


HEADER = 'from transformers import AutoTokenizer\ntokenizer = AutoTokenizer.from_pretrained("HKUSTAudio/Llasa-1B")\n'


@pytest.mark.parametrize(
    ("body", "line"),
    [
        # LLaSA_training's collator: the end appended, the sequence cut exactly when it is longer
        (
            "def f(text, codes, n):\n"
            "    end = tokenizer.convert_tokens_to_ids('<|SPEECH_GENERATION_END|>')\n"
            "    seq = text + codes + [end]\n"
            "    if len(seq) > n:\n"
            "        seq = seq[:n]\n"
            "    return seq\n",
            7,
        ),
        # an unconditional cut of a numpy array built with the end last
        (
            "def f(text, codes):\n    seq = np.concatenate([text, np.array(codes + [tokenizer.eos_token_id])])\n"
            "    return seq[:2048]\n",
            5,
        ),
        # .append(end) then a cut, through a loop over the list of such sequences
        (
            "def f(batch, speech_end_id):\n"
            "    out = []\n"
            "    for codes in batch:\n"
            "        codes.append(speech_end_id)\n"
            "        out.append(codes)\n"
            "    for item in out:\n"
            "        yield item[:1000]\n",
            9,
        ),
        # self attributes: the limit set in __init__, the end id too
        (
            "class D:\n"
            "    def __init__(self):\n"
            "        self.max_length = 2048\n"
            "        self.end = tokenizer.convert_tokens_to_ids('<|SPEECH_GENERATION_END|>')\n"
            "    def get(self, a, b):\n"
            "        ids = a + b + [self.end]\n"
            "        return ids[: self.max_length]\n",
            9,
        ),
    ],
)
def test_end_of_speech_cut(tmp_path, body: str, line: int) -> None:
    path = tmp_path / "prep.py"
    path.write_text(HEADER + body)
    (finding,) = _findings(str(path), "TRN001")
    assert finding.location.line == line and finding.severity == Severity.WARNING


def test_end_of_speech_cut_names_the_limit_in_seconds(tmp_path) -> None:
    path = tmp_path / "prep.py"
    path.write_text(
        HEADER + "class D:\n    def __init__(self):\n        self.max_length = 2048\n"
        "    def get(self, a, b):\n"
        "        return (a + b + [tokenizer.convert_tokens_to_ids('<|SPEECH_GENERATION_END|>')])[: self.max_length]\n"
    )
    (finding,) = _findings(str(path), "TRN001")
    assert finding.evidence["limit"] == 2048 and "41.0 s of Llasa audio" in finding.message


@pytest.mark.parametrize(
    "body",
    [
        # the text is cut before the end is appended (unsloth's Llasa notebook)
        "def f(text, speech, n):\n    room = n - len(speech)\n"
        "    return text[:room] + speech + [tokenizer.eos_token_id]\n",
        # padding comes last, the slice cuts padding only
        "def f(seq, n):\n    seq = seq + [tokenizer.eos_token_id]\n    seq = seq + [0] * (n - len(seq))\n"
        "    return seq[:n]\n",
        # long samples are skipped before the slice
        "def f(seq, n):\n    seq = seq + [tokenizer.eos_token_id]\n    if len(seq) > n:\n        return None\n"
        "    return seq[:n]\n",
        # the shifted input of next-token training drops the last token on purpose
        "def f(seq):\n    seq = seq + [tokenizer.eos_token_id]\n    return seq[:-1], seq[1:]\n",
        # a slice by the length of another sequence
        "def f(seq, other):\n    seq = seq + [tokenizer.eos_token_id]\n    return seq[: len(other)]\n",
        # the end reassigned away before the slice
        "def f(seq, n):\n    seq = seq + [tokenizer.eos_token_id]\n    seq = list(range(3))\n    return seq[:n]\n",
    ],
)
def test_end_of_speech_kept(tmp_path, body: str) -> None:
    path = tmp_path / "prep.py"
    path.write_text(HEADER + body)
    assert _findings(str(path), "TRN001") == []


def test_text_llm_truncation_is_not_a_speech_problem(tmp_path) -> None:
    path = tmp_path / "dpo.py"
    path.write_text("def f(ids, tokenizer, n):\n    ids = ids + [tokenizer.eos_token_id]\n    return ids[:n]\n")
    assert _findings(str(path), "TRN001") == []
    path.write_text("# speech tokens\n" + path.read_text())
    assert len(_findings(str(path), "TRN001")) == 1


def test_sequence_budget_in_seconds() -> None:
    (finding,) = _findings(os.path.join(FIXTURES, "TRN002/bad/outetts-1024"), "TRN002")
    rate = serving_facts("OuteTTS 1.0").tokens_per_second
    assert rate == 150 and f"{1024 / rate:.1f} s" in finding.message and "also passed at line 11" in finding.message
    (finding,) = _findings(os.path.join(FIXTURES, "TRN002/bad/orpheus-yaml-512"), "TRN002")
    assert finding.location.pointer == "/max_seq_length" and f"{512 / 84:.1f} s" in finding.message


def _full_orpheus_tokenizer(directory: str, shift: int = 0) -> None:
    """A WordLevel tokenizer with Llama 3's 128256 ids (the specials where Llama 3 has them) and <custom_token_k> at
    128256 + k + shift: the published layout when shift is 0."""
    vocab = {f"t{i}": i for i in range(128256 + shift)}
    for token, i in (("<|begin_of_text|>", 128000), ("<|end_of_text|>", 128001), ("<|eot_id|>", 128009)):
        del vocab[f"t{i}"]
        vocab[token] = i
    for k in range(20):
        vocab[f"<custom_token_{k}>"] = 128256 + shift + k
    os.makedirs(directory)
    Tokenizer(models.WordLevel(vocab, unk_token="t0")).save(os.path.join(directory, "tokenizer.json"))


SCRIPT = """from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("./orpheus")
end_of_speech = 128256 + 2
audio_start = 128266
def speak(model, ids):
    return model.generate(ids, eos_token_id=end_of_speech, pad_token_id=128263), audio_start
"""


def test_hard_coded_ids_match_the_published_layout(tmp_path) -> None:
    _full_orpheus_tokenizer(str(tmp_path / "orpheus"))
    (tmp_path / "infer.py").write_text(SCRIPT)
    assert _findings(str(tmp_path / "infer.py"), "TRN003") == []


def test_hard_coded_ids_against_a_shifted_tokenizer(tmp_path) -> None:
    _full_orpheus_tokenizer(str(tmp_path / "orpheus"), shift=8)
    (tmp_path / "infer.py").write_text(SCRIPT)
    (finding,) = _findings(str(tmp_path / "infer.py"), "TRN003")
    assert finding.severity == Severity.ERROR and finding.location.line == 6
    assert finding.evidence["ids"] == [128258, 128263, 128266]
    tok = Tokenizer.from_file(str(tmp_path / "orpheus" / "tokenizer.json"))
    # the message gives the id each token really has, and what the hard-coded id is there
    assert f"'<custom_token_2>', which is {tok.token_to_id('<custom_token_2>')} in it" in finding.message
    assert f"(128258 is {tok.id_to_token(128258)!r} there)" in finding.message


def test_hard_coded_ids_table_is_the_published_layout() -> None:
    table = published_ids("Orpheus")
    assert (
        table is not None
        and table.ids[128258] == "<custom_token_2>"
        and table.ids[128266 + 4096] == ("<custom_token_4106>")
    )
    llasa = published_ids("Llasa")
    assert llasa is not None and llasa.ids[128256 + 8] == "<|s_0|>" and llasa.ids[128261] == "<|SPEECH_GENERATION_END|>"
    assert serving_facts("Llasa").end_of_speech == llasa.ids[128261]


def test_hard_coded_ids_bad_fixture_lists_each_id_once() -> None:
    (finding,) = _findings(os.path.join(FIXTURES, "TRN003/bad/orpheus-ids-other-base"), "TRN003")
    with open(os.path.join(FIXTURES, "TRN003/bad/orpheus-ids-other-base/orpheus-multilingual/tokenizer.json")) as fh:
        vocab = json.load(fh)["added_tokens"]
    ids = {t["content"]: t["id"] for t in vocab}
    assert finding.evidence["ids"] == [128009, 128258, 128259, 128260, 128266]
    assert f"'<custom_token_10>', which is {ids['<custom_token_10>']} in it" in finding.message


XCODEC = (
    'from xcodec2.modeling_xcodec2 import XCodec2Model\ncodec = XCodec2Model.from_pretrained("HKUSTAudio/xcodec2")\n'
)


@pytest.mark.parametrize(
    ("body", "severity"),
    [
        ("wav = codec.decode_code(codes)\nsf.write('a.wav', wav[0, 0].cpu().numpy(), 24000)\n", Severity.WARNING),
        (
            "wav = codec.decode_code(codes)\nout = wav.squeeze()\ntorchaudio.save('a.wav', out, 22050)\n",
            Severity.WARNING,
        ),
        (
            "from scipy.io import wavfile\nwav = codec.decode_code(codes)\nwavfile.write('a.wav', 44100, wav)\n",
            Severity.WARNING,
        ),
        ("SR = 12\nsf.write('a.wav', codec.decode_code(codes), samplerate=SR)\n", Severity.ERROR),
        ("ds = ds.cast_column('audio', Audio(sampling_rate=50))\n", Severity.ERROR),
        ("ds = ds.cast_column('audio', Audio(sampling_rate=24000))\n", Severity.WARNING),
    ],
)
def test_sample_rates_against_the_codec(tmp_path, body: str, severity: Severity) -> None:
    path = tmp_path / "infer.py"
    path.write_text(XCODEC + body)
    (finding,) = _findings(str(path), "COD006")
    assert finding.severity == severity and finding.location.line == body.count("\n") + 2


@pytest.mark.parametrize(
    "body",
    [
        "wav = codec.decode_code(codes)\nsf.write('a.wav', wav[0, 0].cpu().numpy(), 16000)\n",
        "sf.write('reference.wav', reference_audio, 24000)\n",  # not the codec's output
        # decoded at 24 kHz, resampled to the codec's 16 kHz before encoding
        "ds = ds.cast_column('audio', Audio(sampling_rate=24000))\n"
        "w = torchaudio.functional.resample(w, 24000, 16000)\n",
        "wav = codec.decode_code(codes)\nsf.write('a.wav', wav, sr)\n",  # a rate computed elsewhere
    ],
)
def test_sample_rates_that_fit(tmp_path, body: str) -> None:
    path = tmp_path / "infer.py"
    path.write_text(XCODEC + body)
    assert _findings(str(path), "COD006") == []


def test_sample_rate_without_a_known_codec_only_catches_frame_rates(tmp_path) -> None:
    path = tmp_path / "infer.py"
    path.write_text("import soundfile as sf\nsf.write('a.wav', model.decode(x), 16000)\nsf.write('b.wav', y, 75)\n")
    (finding,) = _findings(str(path), "COD006")
    assert finding.location.line == 3 and "frame rate of" in finding.message


def test_sample_rate_yaml_fix_sets_the_codec_rate() -> None:
    (finding,) = _findings(os.path.join(FIXTURES, "COD006/bad/orpheus-yaml-22050"), "COD006")
    (edit,) = finding.fix.edits
    assert finding.fix.applicability.value == "safe" and edit.pointer == "/sample_rate" and edit.value == 24000
