"""Audits of thousands of repositories on a Dask cluster: one `ttsdoctor check` per Hub id or path, JSON lines out.

    pip install 'ttsdoctor[audit]'
    python -m ttsdoctor.audit ids.txt -o audit.jsonl                       # a local cluster of this machine's cores
    python -m ttsdoctor.audit ids.txt --scheduler tcp://HOST:8786 -o audit.jsonl   # an existing Dask cluster

`ids.txt` holds one target per line: `hf://ORG/NAME[@REV]`, `ORG/NAME`, or a path the workers can read (blank
lines and `#` comments are skipped). Dask schedules, retries and balances; this module only says what one task is
(`check_one`: the check of one target, its JSON lines, never an exception) and writes the lines as tasks finish.
Each target's lines are the `--format jsonl` lines of `ttsdoctor check TARGET`, then one `"type": "run"` line with
the exit code and what the check said on stderr (a missing or gated repository says it there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO


def check_one(target: str, options: Sequence[str] = ()) -> list[str]:
    """`ttsdoctor check TARGET --format jsonl` in this process: its lines and a closing `run` line."""
    from ttsdoctor import cli

    out, err = io.StringIO(), io.StringIO()
    args = ["check", target, "--format", "jsonl", "--jobs", "1", *options]
    if not target.startswith("hf://") and "--hub" not in options:
        args.append("--hub")  # ORG/NAME with no such local path is a Hub id
    try:
        with contextlib.redirect_stderr(err):
            code = cli.main(args, out=out)
    except Exception as exc:  # a bug of ours must not cost the rest of the audit
        code = 3
        err.write(f"internal error: {type(exc).__name__}: {exc}\n")
    lines = out.getvalue().splitlines()
    lines.append(json.dumps({"type": "run", "target": target, "exit": code, "stderr": err.getvalue().strip()}))
    return lines


def read_targets(stream: Iterable[str]) -> list[str]:
    targets = []
    for line in stream:
        line = line.strip()
        if line and not line.startswith("#"):
            targets.append(line)
    return list(dict.fromkeys(targets))


def audit(client: Any, targets: Sequence[str], options: Sequence[str] = ()) -> Iterator[list[str]]:
    """The lines of each target's check, in the order the tasks finish, computed on the cluster of `client`."""
    from distributed import as_completed

    futures = client.map(check_one, list(targets), options=list(options), pure=False)
    for future in as_completed(futures):
        yield future.result()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ttsdoctor.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", help="file with one Hub id or path per line ('-': standard input)")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None, help="local cluster: worker processes (default: cores)")
    parser.add_argument("--output", "-o", help="write the JSON lines here (default: standard output)")
    parser.add_argument("--remote", action="store_true", help="passed to each check")
    parser.add_argument("--download-pickles", action="store_true", help="passed to each check")
    args = parser.parse_args(argv)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        sys.stderr.write("ttsdoctor: error: audits run on Dask: pip install 'ttsdoctor[audit]'\n")
        return 2
    try:
        if args.targets == "-":
            targets = read_targets(sys.stdin)
        else:
            with open(args.targets, encoding="utf-8") as fh:
                targets = read_targets(fh)
    except OSError as exc:
        sys.stderr.write(f"ttsdoctor: error: {args.targets}: {exc.strerror}\n")
        return 2
    options = [flag for flag, on in (("--remote", args.remote), ("--download-pickles", args.download_pickles)) if on]
    sink = open(args.output, "w", encoding="utf-8") if args.output else (out or sys.stdout)  # noqa: SIM115
    failed = 0
    try:
        with contextlib.ExitStack() as stack:
            if args.scheduler:
                client = stack.enter_context(Client(args.scheduler))
            else:
                cluster = stack.enter_context(
                    LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
                )
                client = stack.enter_context(Client(cluster))
            for done, lines in enumerate(audit(client, targets, options), 1):
                sink.write("\n".join(lines) + "\n")
                sink.flush()
                failed += json.loads(lines[-1])["exit"] >= 2
                if sys.stderr.isatty():
                    sys.stderr.write(f"\r\033[2K{done}/{len(targets)} checked")
    finally:
        if args.output:
            sink.close()
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    sys.stderr.write(f"ttsdoctor: {len(targets)} targets checked, {failed} could not be read\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
