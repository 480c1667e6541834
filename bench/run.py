"""ttsdoctor benchmarks: each line a ratio measured side by side in the same run.

    .venv/bin/python bench/run.py [--repeat 5] [--keep DIR]

Builds its own inputs in a temporary directory (about 1.3 GB of real data for the row scan; the 20 GB of
shards are sparse files whose data is never read) and prints a table:

- check of a model dir as transformers' save_pretrained writes it (a 150k-token tokenizer.json, a
  tokenizer_config.json listing all 4103 added tokens in `added_tokens_decoder`, special_tokens_map.json,
  20 GB of sharded safetensors with their index) vs a bare Python process that loads the same
  tokenizer.json with `tokenizers` (target <= 0.8x);
- the same check with 1 MB of weights vs 20 GB (target <= 1.1x) and the peak memory of the checked process;
- vs what a user does today: AutoConfig + AutoTokenizer + GenerationConfig in a fresh process (>= 12x);
- every source rule over the installed transformers and torch packages vs bare ast.parse of the same files,
  in one process (<= 1.3x; the check uses every usable core, as it does by default);
- a tree of 40 small folders: --jobs 1 vs the default, all usable cores (>= 1.6x on 2 cores);
- a JSON training config of 1.1 MB vs one a tenth of its size, read in process (<= 12x: linear, not quadratic);
- the untrained-row scan of a 151936 x 4096 bf16 embedding vs reading the same rows' bytes (<= 2x).

Each pair of commands runs --repeat times interleaved (a, b, a, b ...); min and median are printed and the
ratio is of the medians. No timing is asserted anywhere.
ttsdoctor is byte-compiled first, as a wheel install is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PY = sys.executable
BASE_VOCAB = 150_000
AUDIO_TOKENS = 4_100
HIDDEN = 4096


def build_tokenizer(path: str) -> int:
    """A byte-level BPE with ~150k merges (as Qwen2 has) and 4100 added audio tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xA1, 0x180)]
    vocab = {c: i for i, c in enumerate(alphabet)}
    tokens = list(alphabet)
    merges = []
    while len(vocab) < BASE_VOCAB:
        a, b = rng.choice(tokens), rng.choice(tokens[:2000])
        if len(a) + len(b) > 12 or a + b in vocab:
            continue
        vocab[a + b] = len(vocab)
        tokens.append(a + b)
        merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True) for s in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tok.add_tokens([AddedToken(f"<|{i}|>", special=False, normalized=False) for i in range(AUDIO_TOKENS)])
    tok.save(path)
    return tok.get_vocab_size()


def write_sparse_safetensors(path: str, tensors: dict[str, tuple[str, list[int]]], real: bool = False) -> int:
    """A safetensors file whose data section is a hole (or random bytes when `real`)."""
    sizes = {"BF16": 2, "F16": 2, "F32": 4}
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        if real:
            chunk = os.urandom(1 << 24)
            remaining = offset
            while remaining:
                step = min(remaining, len(chunk))
                fh.write(chunk[:step])
                remaining -= step
        else:
            fh.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def write_tokenizer_config(path: str, tokenizer_json: str) -> None:
    """tokenizer_config.json and special_tokens_map.json as transformers' save_pretrained writes them: every added
    token listed in `added_tokens_decoder`, keys sorted, two-space indent."""
    with open(tokenizer_json, encoding="utf-8") as fh:
        added = json.load(fh)["added_tokens"]
    decoder = {
        str(t["id"]): {
            "content": t["content"],
            "lstrip": t["lstrip"],
            "normalized": t["normalized"],
            "rstrip": t["rstrip"],
            "single_word": t["single_word"],
            "special": t["special"],
        }
        for t in added
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "extra_special_tokens": {},
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    special = {
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "eos_token": {
            "content": "<|im_end|>",
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        },
        "pad_token": {
            "content": "<|endoftext|>",
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        },
    }
    with open(os.path.join(path, "special_tokens_map.json"), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(special, indent=2, ensure_ascii=False) + "\n")


def build_model_dir(path: str, tokenizer_json: str, ids: int, total_bytes: int) -> int:
    """config + tokenizer + sharded weights of about `total_bytes` (sparse)."""
    os.makedirs(path, exist_ok=True)
    shutil.copy(tokenizer_json, os.path.join(path, "tokenizer.json"))
    rows = -(-ids // 128) * 128
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": rows,
        "hidden_size": HIDDEN,
        "max_position_embeddings": 32768,
        "pad_token_id": BASE_VOCAB,
        "eos_token_id": BASE_VOCAB + 2,
        "rope_theta": 1000000.0,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.0",
    }
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    with open(os.path.join(path, "generation_config.json"), "w") as fh:
        json.dump({"pad_token_id": BASE_VOCAB, "eos_token_id": BASE_VOCAB + 2, "max_length": 4096}, fh, indent=2)
    write_tokenizer_config(path, tokenizer_json)
    embedding = rows * HIDDEN * 2
    layer = max((total_bytes - 2 * embedding) // 64, 1 << 20)
    per_shard = 8
    weight_map = {}
    written = 0
    shard_tensors: list[dict] = [{"model.embed_tokens.weight": ("BF16", [rows, HIDDEN])}]
    for i in range(64):
        if len(shard_tensors[-1]) >= per_shard:
            shard_tensors.append({})
        shard_tensors[-1][f"model.layers.{i}.mlp.weight"] = ("BF16", [layer // (2 * HIDDEN), HIDDEN])
    shard_tensors[-1]["lm_head.weight"] = ("BF16", [rows, HIDDEN])
    for index, tensors in enumerate(shard_tensors, start=1):
        name = f"model-{index:05d}-of-{len(shard_tensors):05d}.safetensors"
        written += write_sparse_safetensors(os.path.join(path, name), tensors)
        weight_map.update({t: name for t in tensors})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": written}, "weight_map": weight_map}, fh, indent=2)
    return written


def run_once(args: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-2000:]}")
    return seconds


def paired(a: list[str], b: list[str], repeat: int, env: dict | None = None) -> tuple[list[float], list[float]]:
    """Wall seconds of `repeat` fresh processes of each command, interleaved (a, b, a, b ...) so that a busy
    moment of the machine hits both alike."""
    times_a, times_b = [], []
    for _ in range(repeat):
        times_a.append(run_once(a, env))
        times_b.append(run_once(b, env))
    return times_a, times_b


_PEAK = """
import sys
from ttsdoctor.cli import main
main(sys.argv[1:])  # main_exit would leave with os._exit before this process could report its peak
# VmHWM is this process's own peak; ru_maxrss of a child spawned by a large parent can report the parent's
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
sys.stderr.write(f"\\nVMHWM {peak[0] if peak else 0}\\n")
"""


def peak_rss_mb(cli_args: list[str]) -> float:
    """Peak resident memory (MB) of the checked process itself: `ttsdoctor ARGS...`."""
    proc = subprocess.run([PY, "-c", _PEAK, *cli_args], capture_output=True, text=True, cwd=ROOT)
    found = [line for line in proc.stderr.splitlines() if line.startswith("VMHWM ")]
    return int(found[-1].split()[1]) / 1024 if found else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", help="build inputs here and keep them")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="ttsdoctor-bench-")
    os.makedirs(work, exist_ok=True)
    rows_out: list[tuple[str, list[float], list[float], str]] = []
    memory = ""
    try:
        # A wheel install has ttsdoctor byte-compiled, as site-packages has tokenizers and transformers; an
        # editable install under PYTHONDONTWRITEBYTECODE=1 (set on the CI machines) would compile every
        # module again in every process (~35 ms), which no user of an installed ttsdoctor pays.
        subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "ttsdoctor")], check=True)
        print(f"building inputs in {work} ...", file=sys.stderr)
        tok_path = os.path.join(work, "tokenizer.json")
        ids = build_tokenizer(tok_path)
        big = os.path.join(work, "big")
        small = os.path.join(work, "small")
        size = build_model_dir(big, tok_path, ids, 20 * 10**9)
        shutil.rmtree(small, ignore_errors=True)
        shutil.copytree(big, small, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
        rows = -(-ids // 128) * 128
        write_sparse_safetensors(
            os.path.join(small, "model.safetensors"),
            {"model.embed_tokens.weight": ("BF16", [rows, 1]), "lm_head.weight": ("BF16", [rows, 1])},
        )
        small_size = os.path.getsize(os.path.join(small, "model.safetensors"))
        check = [PY, "-m", "ttsdoctor", "check", "--format", "json"]
        floor = [PY, "-c", f"from tokenizers import Tokenizer; Tokenizer.from_file({tok_path!r})"]
        run_once([*check, big])  # warm the page cache
        t_big, t_floor = paired([*check, big], floor, args.repeat)
        rows_out.append(("check 20 GB model dir vs loading its tokenizer.json", t_big, t_floor, "<= 0.8x"))
        t_big2, t_small = paired([*check, big], [*check, small], args.repeat)
        rows_out.append(
            (f"check with {size / 1e9:.0f} GB of weights vs {small_size / 1e6:.1f} MB", t_big2, t_small, "<= 1.1x")
        )
        mem = [peak_rss_mb(["check", "--format", "json", big]) for _ in range(3)]
        memory = f"peak memory of the 20 GB check: {min(mem):.0f} MB (of the checked process; target < 150 MB)"
        try:
            import transformers

            user = [
                PY,
                "-c",
                "from transformers import AutoConfig, AutoTokenizer, GenerationConfig; "
                f"AutoConfig.from_pretrained({big!r}); AutoTokenizer.from_pretrained({big!r}); "
                f"GenerationConfig.from_pretrained({big!r})",
            ]
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            t_user, t_check = paired(user, [*check, big], args.repeat, env)
            rows_out.append(
                ("transformers AutoConfig+AutoTokenizer+GenerationConfig vs check", t_user, t_check, ">= 12x")
            )
            trees = [("transformers", os.path.dirname(transformers.__file__))]
            try:
                import torch

                trees.append(("torch", os.path.dirname(torch.__file__)))
            except ImportError:
                print("torch not installed: skipping the torch source tree", file=sys.stderr)
            for name, src in trees:
                # the bare parse skips what ast cannot parse (torch ships a test file in Python 3.12 grammar), as
                # the check does: a baseline that stopped at the first SyntaxError would time part of the tree
                parse = [
                    PY,
                    "-c",
                    "import ast, os\n"
                    f"for d, _, fs in os.walk({src!r}):\n"
                    "    for f in fs:\n"
                    "        if f.endswith('.py'):\n"
                    "            try:\n"
                    "                ast.parse(open(os.path.join(d, f), encoding='utf-8').read())\n"
                    "            except (SyntaxError, ValueError, UnicodeDecodeError):\n"
                    "                pass",
                ]
                source_check = [PY, "-m", "ttsdoctor", "check", src, "--format", "json"]  # every rule
                t_source, t_parse = paired(source_check, parse, max(3, args.repeat // 2))
                rows_out.append((f"source rules over the {name} package vs ast.parse", t_source, t_parse, "<= 1.3x"))
        except ImportError:
            print("transformers not installed: skipping the transformers comparisons", file=sys.stderr)
        # a tree of 40 small model folders: one process vs the default (all usable cores), runs interleaved
        tree = os.path.join(work, "tree")
        shutil.rmtree(tree, ignore_errors=True)  # a --keep folder of an earlier run
        for i in range(40):
            shutil.copytree(os.path.join(ROOT, "fixtures", "TOK001", "bad", "outetts-pad-eos-0"), f"{tree}/m{i:02d}")
        serial, parallel = paired([*check, tree, "--jobs", "1"], [*check, tree], max(3, args.repeat // 2))
        rows_out.append(
            (
                f"check of 40 small folders: --jobs 1 vs the default ({os.cpu_count()} cores)",
                serial,
                parallel,
                ">= 1.6x",
            )
        )
        # reading a JSON training config grows with its size, not its size squared (the line of every value is
        # found in one walk; one lookup per value took minutes on an 840 KB JSON of a real repository)
        from ttsdoctor.artifacts.training_config import parse_training_config

        def json_config(records: int) -> str:
            path = os.path.join(work, f"config-{records}.json")
            record = {"name": "r", "strategy": {"scorer": {"patterns": ["a", "b", "c"], "weight": 0.5}}, "n": 3}
            with open(path, "w") as fh:
                json.dump({"model_name_or_path": "m", "records": [record] * records}, fh, indent=2)
            return path

        large, little = json_config(5_000), json_config(500)
        t_large, t_little = [], []
        for _ in range(args.repeat):
            t_large.append(_clock(lambda: parse_training_config(large)))
            t_little.append(_clock(lambda: parse_training_config(little)))
        rows_out.append(
            (
                f"JSON training config, {os.path.getsize(large) / 1e6:.1f} MB vs a tenth of it (linear: 10x)",
                t_large,
                t_little,
                "<= 12x",
            )
        )
        # untrained-row scan on real bytes
        from ttsdoctor.artifacts.row_stats import MAX_NEW_ROWS, REFERENCE_ROWS, _spaced, row_report
        from ttsdoctor.artifacts.weights import read_safetensors_header

        emb_path = os.path.join(work, "embedding.safetensors")
        write_sparse_safetensors(emb_path, {"model.embed_tokens.weight": ("BF16", [151936, HIDDEN])}, real=True)
        tensor = read_safetensors_header(emb_path).tensors["model.embed_tokens.weight"]
        new_ids = list(range(151936 - 2 * AUDIO_TOKENS, 151936))
        first = new_ids[0]
        wanted = sorted(set(_spaced(new_ids, MAX_NEW_ROWS)) | set(_spaced(list(range(first)), REFERENCE_ROWS)))
        row_bytes = HIDDEN * 2

        def read_bytes() -> None:
            with open(emb_path, "rb") as fh:
                for i in wanted:
                    fh.seek(tensor.data_start + i * row_bytes)
                    fh.read(row_bytes)

        read_bytes()
        row_report(tensor, new_ids, first)
        t_scan, t_read = [], []
        for _ in range(args.repeat):
            t_scan.append(_clock(lambda: row_report(tensor, new_ids, first)))
            t_read.append(_clock(read_bytes))
        rows_out.append((f"untrained-row scan of 151936x{HIDDEN} bf16 vs reading those rows", t_scan, t_read, "<= 2x"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.repeat} interleaved runs per pair (a, b, a, b ...); seconds as min / median; ratio of medians")
    print(f"{'measurement (a vs b)':<62} {'a min/med':>15} {'b min/med':>15} {'ratio':>7} {'min ratio':>9}  target")
    for name, a, b, target in rows_out:
        ratio = statistics.median(a) / statistics.median(b)
        best = min(a) / min(b)
        print(
            f"{name:<62} {min(a):>7.3f}/{statistics.median(a):<7.3f} {min(b):>7.3f}/{statistics.median(b):<7.3f} "
            f"{ratio:>6.2f}x {best:>8.2f}x  {target}"
        )
    if memory:
        print(memory)


def _clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
