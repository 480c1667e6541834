"""ttsdoctor benchmarks: each line a ratio measured side by side in the same run.

    .venv/bin/python bench/run.py [--repeat 5] [--keep DIR]

Builds its own inputs in a temporary directory (about 1.3 GB of real data for the row scan; the 20 GB of
shards are sparse files whose data is never read) and prints a table:

- check of a model dir with a 150k-token tokenizer and 20 GB of sharded safetensors vs a bare Python
  process that loads the same tokenizer.json with `tokenizers` (target <= 1.3x);
- the same check with 1 MB of weights vs 20 GB (target <= 1.1x) and the peak memory of the check;
- vs what a user does today: AutoConfig + AutoTokenizer + GenerationConfig in a fresh process (>= 10x);
- the source rules over the installed transformers package vs bare ast.parse of the same files (<= 1.5x);
- the untrained-row scan of a 151936 x 4096 bf16 embedding vs reading the same rows' bytes (<= 2x).

Wall times of fresh processes are the median of --repeat runs; no timing is asserted anywhere.
ttsdoctor is byte-compiled first, as a wheel install is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
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
    with open(os.path.join(path, "tokenizer_config.json"), "w") as fh:
        json.dump(
            {
                "pad_token": "<|endoftext|>",
                "eos_token": "<|im_end|>",
                "model_max_length": 32768,
                "tokenizer_class": "Qwen2Tokenizer",
            },
            fh,
            indent=2,
        )
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


def timed_process(args: list[str], repeat: int, env: dict | None = None) -> tuple[float, int]:
    """(median wall seconds, max peak RSS in KB) of `repeat` fresh processes."""
    times, peaks = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-2000:]}")
        peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        del before
    return statistics.median(times), max(peaks)


def peak_rss(args: list[str]) -> int:
    """Peak RSS (KB) of one process, measured with /usr/bin/time-like wait4."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", help="build inputs here and keep them")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="ttsdoctor-bench-")
    os.makedirs(work, exist_ok=True)
    rows_out = []
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
        timed_process([*check, big], 1)  # warm the page cache
        t_floor, _ = timed_process(floor, args.repeat)
        t_big, _ = timed_process([*check, big], args.repeat)
        t_small, _ = timed_process([*check, small], args.repeat)
        mem_big = peak_rss([*check, big])
        rows_out.append(
            ("check 20 GB model dir vs loading its tokenizer.json", t_big, t_floor, t_big / t_floor, "<= 1.3x")
        )
        rows_out.append(
            (
                f"check with {size / 1e9:.0f} GB of weights vs {small_size / 1e6:.1f} MB",
                t_big,
                t_small,
                t_big / t_small,
                "<= 1.1x",
            )
        )
        rows_out.append(("peak memory of the 20 GB check (MB)", mem_big / 1024, 300, mem_big / 1024 / 300, "< 300 MB"))
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
            t_user, _ = timed_process(user, args.repeat, env)
            rows_out.append(
                (
                    "transformers AutoConfig+AutoTokenizer+GenerationConfig vs check",
                    t_user,
                    t_big,
                    t_user / t_big,
                    ">= 10x",
                )
            )
            src = os.path.dirname(transformers.__file__)
            parse = [
                PY,
                "-c",
                "import ast, os, sys\n"
                f"for d, _, fs in os.walk({src!r}):\n"
                "    for f in fs:\n"
                "        if f.endswith('.py'):\n"
                "            ast.parse(open(os.path.join(d, f), encoding='utf-8').read())",
            ]
            source_check = [PY, "-m", "ttsdoctor", "check", src, "--select", "TOK002,GEN,ATT", "--format", "json"]
            t_parse, _ = timed_process(parse, max(1, args.repeat // 2))
            t_source, _ = timed_process(source_check, max(1, args.repeat // 2))
            rows_out.append(
                (
                    "source rules over the transformers package vs ast.parse",
                    t_source,
                    t_parse,
                    t_source / t_parse,
                    "<= 1.5x",
                )
            )
        except ImportError:
            print("transformers not installed: skipping the transformers comparisons", file=sys.stderr)
        # a tree of 40 small model folders: the default (all usable cores) vs one process, runs interleaved
        tree = os.path.join(work, "tree")
        for i in range(40):
            shutil.copytree(os.path.join(ROOT, "fixtures", "TOK001", "bad", "outetts-pad-eos-0"), f"{tree}/m{i:02d}")
        serial, parallel = [], []
        for _ in range(max(1, args.repeat // 2)):
            serial.append(timed_process([*check, tree, "--jobs", "1"], 1)[0])
            parallel.append(timed_process([*check, tree], 1)[0])
        rows_out.append(
            (
                f"check of 40 small folders: --jobs 1 vs the default ({os.cpu_count()} cores)",
                statistics.median(serial),
                statistics.median(parallel),
                statistics.median(serial) / statistics.median(parallel),
                ">= 1.6x on 2 cores",
            )
        )
        # untrained-row scan on real bytes
        from ttsdoctor.artifacts.weights import read_safetensors_header
        from ttsdoctor.checks.row_stats import MAX_NEW_ROWS, REFERENCE_ROWS, _spaced, row_report

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
        t_read = statistics.median(_clock(read_bytes) for _ in range(args.repeat))
        t_scan = statistics.median(_clock(lambda: row_report(tensor, new_ids, first)) for _ in range(args.repeat))
        rows_out.append(
            (
                f"untrained-row scan of 151936x{HIDDEN} bf16 vs reading those rows",
                t_scan,
                t_read,
                t_scan / t_read,
                "<= 2x",
            )
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'measurement':<62} {'ttsdoctor/a':>11} {'baseline/b':>11} {'ratio':>7}  target")
    for name, a, b, ratio, target in rows_out:
        print(f"{name:<62} {a:>11.3f} {b:>11.3f} {ratio:>6.2f}x  {target}")


def _clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
