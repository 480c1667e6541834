"""The ecosystem check: ttsdoctor on pinned public TTS repositories and packages, against labelled expectations.

    python ecosystem/run.py fetch --corpus DIR    # bring the pinned trees into DIR (needs the network)
    python ecosystem/run.py fetch --corpus DIR --mirror M   # git entries from bare clones M/OWNER+NAME[/repo]
    python ecosystem/run.py check --corpus DIR    # check every tree, compare with ecosystem/labels.json
    python ecosystem/run.py check --corpus DIR --update   # also add new findings to labels.json, unlabelled

`corpus.json` pins each entry: a GitHub repository at a commit (its tree without `.git`, as a downloaded archive
is) or a PyPI release (the wheel or sdist unpacked). `labels.json` holds every error and warning ttsdoctor
reports on them, each labelled by a person "true", "false" or "debatable" with a reason, and the number of info
findings per entry and rule. `check` prints the findings by severity, the labels, the precision for errors and
for warnings (debatable rows are left out of it and listed), and every difference: a finding nobody labelled, a
labelled finding that is gone (a true one lost is a regression), a labelled finding whose severity changed (its
label is re-read; `--update` stores the new severity and message). It exits 1 on a false error, an unlabelled
error or warning, a lost true finding, or a changed severity not yet stored. CI has no network: every lesson
learned here is also a fixture.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus.json")
LABELS = os.path.join(HERE, "labels.json")


def load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def corpus_entries() -> list[dict]:
    """corpus.json's entries; an id given twice is refused (its findings and infos would be counted twice)."""
    entries = load_json(CORPUS)["entries"]
    twice = sorted(i for i, n in collections.Counter(e["id"] for e in entries).items() if n > 1)
    if twice:
        raise SystemExit(f"{CORPUS}: entry id given more than once: {', '.join(twice)}")
    return entries


def fetch(corpus_dir: str, mirror: str | None = None) -> int:
    os.makedirs(corpus_dir, exist_ok=True)
    failed = 0
    for entry in corpus_entries():
        dest = os.path.join(corpus_dir, entry["id"])
        if os.path.isdir(dest):
            continue
        try:
            if "git" in entry and mirror:
                _copy_from_mirror(entry, mirror, dest)
            elif "git" in entry:
                _fetch_git(entry, dest)
            else:
                _fetch_pypi(entry, dest)
            print(f"fetched {entry['id']}")
        except (OSError, subprocess.CalledProcessError) as exc:
            failed += 1
            shutil.rmtree(dest, ignore_errors=True)  # a half-made tree would be skipped as fetched next time
            print(f"could not fetch {entry['id']}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _fetch_git(entry: dict, dest: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        url = f"https://github.com/{entry['git']}.git"
        subprocess.run(["git", "clone", "--quiet", "--filter=blob:none", "--no-checkout", url, repo], check=True)
        archive = subprocess.run(
            ["git", "-C", repo, "archive", entry["commit"]], check=True, capture_output=True
        ).stdout
        os.makedirs(dest)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter=_within_tree)


def _within_tree(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's data filter, skipping what it refuses (a committed virtualenv's absolute symlinks) instead of
    failing the whole tree."""
    try:
        return tarfile.data_filter(member, path)
    except tarfile.FilterError:
        return None


def _copy_from_mirror(entry: dict, mirror: str, dest: str) -> None:
    """The tree at the pinned commit from a bare clone, blob by blob: a partial mirror lacking its largest files
    (weights, audio) still gives every file it holds; the missing ones are counted."""
    git_dir = os.path.join(mirror, entry["git"].replace("/", "+"))
    if os.path.isdir(os.path.join(git_dir, "repo")):
        git_dir = os.path.join(git_dir, "repo")
    listing = subprocess.run(
        ["git", "--git-dir", git_dir, "ls-tree", "-r", "-z", entry["commit"]], check=True, capture_output=True
    ).stdout
    blobs = []
    for row in filter(None, listing.split(b"\0")):
        meta, path = row.split(b"\t", 1)
        mode, kind, sha = meta.decode().split()
        if kind == "blob":
            blobs.append((mode, sha, os.fsdecode(path)))
        elif kind == "commit":  # a submodule: an empty folder, as in a downloaded archive
            os.makedirs(os.path.join(dest, os.fsdecode(path)), exist_ok=True)
    with tempfile.TemporaryFile() as ids:
        ids.write("".join(sha + "\n" for _, sha, _ in blobs).encode())
        ids.seek(0)
        proc = subprocess.Popen(["git", "--git-dir", git_dir, "cat-file", "--batch"], stdin=ids, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        missing = 0
        for mode, _sha, path in blobs:
            header = proc.stdout.readline().split()
            if header[1] == b"missing":
                missing += 1
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)
            target = os.path.join(dest, path)
            if os.path.relpath(target, dest).startswith(os.pardir):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if mode == "120000":
                os.symlink(os.fsdecode(data), target)
            else:
                with open(target, "wb") as fh:
                    fh.write(data)
                if mode == "100755":
                    os.chmod(target, 0o755)
        proc.wait()
    if missing:
        print(f"{entry['id']}: {missing} files the mirror does not hold were left out", file=sys.stderr)


def _fetch_pypi(entry: dict, dest: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = f"{entry['pypi']}=={entry['version']}"
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, spec], check=True)
        (name,) = os.listdir(tmp)
        os.makedirs(dest)
        path = os.path.join(tmp, name)
        if name.endswith(".whl"):
            with zipfile.ZipFile(path) as zf:
                zf.extractall(dest)
        else:
            with tarfile.open(path) as tar:
                tar.extractall(dest, filter="data")


def run_check(corpus_dir: str, entry_id: str) -> list[dict]:
    """ttsdoctor's findings on one tree, with paths relative to the tree (as a user in its folder sees them)."""
    tree = os.path.join(corpus_dir, entry_id)
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        proc = subprocess.run(
            [sys.executable, "-m", "ttsdoctor", "check", ".", "--format", "json", "-o", report],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        # 2 with a report is a tree holding an unreadable file (ACE-Step's broken notebook): its ART001 error is a
        # finding to label like any other; 2 without one, or with an internal error, is a failure of the run
        reported = proc.returncode == 2 and os.path.exists(report) and "internal error" not in proc.stderr
        if proc.returncode not in (0, 1) and not reported:
            raise SystemExit(f"{entry_id}: ttsdoctor exited {proc.returncode}: {proc.stderr[-2000:]}")
        findings = load_json(report)["findings"]
    out = []
    for f in findings:
        out.append(
            {
                "entry": entry_id,
                "code": f["code"],
                "severity": f["severity"],
                "path": os.path.normpath(f["path"]).replace(os.sep, "/"),
                "line": f["line"],
                "cell": f.get("cell"),
                "message": f["message"],
            }
        )
    return out


def key(row: dict) -> tuple:
    return row["entry"], row["code"], row["path"], row["line"], row.get("cell")


def compare(corpus_dir: str, update: bool) -> int:
    corpus = corpus_entries()
    labels = load_json(LABELS) if os.path.exists(LABELS) else {"version": 1, "findings": [], "infos": {}}
    labelled = {key(row): row for row in labels["findings"]}
    missing_trees = [e["id"] for e in corpus if not os.path.isdir(os.path.join(corpus_dir, e["id"]))]
    if missing_trees:
        print(f"not in {corpus_dir} (run fetch): {', '.join(missing_trees)}", file=sys.stderr)
        return 2
    seen: set[tuple] = set()
    new_rows: list[dict] = []
    changed: list[tuple[dict, dict]] = []  # (label row, finding) whose severity changed: its label needs a re-read
    infos: dict[str, int] = {}
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    print(f"{'entry':45} {'errors':>7} {'warnings':>9} {'infos':>6}")
    for entry in corpus:
        findings = run_check(corpus_dir, entry["id"])
        by_sev = collections.Counter(f["severity"] for f in findings)
        print(f"{entry['id']:45} {by_sev['error']:>7} {by_sev['warning']:>9} {by_sev['info']:>6}")
        for f in findings:
            if f["severity"] == "info":
                name = f"{f['entry']} {f['code']}"
                infos[name] = infos.get(name, 0) + 1
                continue
            k = key(f)
            seen.add(k)
            row = labelled.get(k)
            if row is None:
                new_rows.append({**f, "label": "unlabelled", "why": ""})
                continue
            counts[(f["severity"], row["label"])] += 1
            if row["severity"] != f["severity"]:
                changed.append((row, f))
    lost = [row for k, row in labelled.items() if k not in seen]
    lost_true = [row for row in lost if row["label"] == "true"]

    print()
    for severity in ("error", "warning"):
        true, false, debatable = (counts[(severity, label)] for label in ("true", "false", "debatable"))
        judged = true + false
        precision = f"{true / judged:.1%}" if judged else "n/a"
        print(f"{severity}s: {true} true, {false} false, {debatable} debatable -> precision {precision}")
    info_total = sum(infos.values())
    print(f"infos: {info_total} (per entry and rule in labels.json)")
    for row in labels["findings"]:
        if row["label"] == "debatable" and key(row) in seen:
            print(f"  debatable: {row['entry']}/{row['path']}:{row['line']} {row['code']}: {row['why']}")
    for row in new_rows:
        print(f"NEW {row['severity']}: {row['entry']}/{row['path']}:{row['line']} {row['code']} {row['message'][:160]}")
    # rows an earlier --update added and nobody labelled yet: as much a failure as new ones
    unlabelled = [row for row in labels["findings"] if row["label"] == "unlabelled" and key(row) in seen]
    for row in unlabelled:
        print(f"UNLABELLED {row['severity']}: {row['entry']}/{row['path']}:{row['line']} {row['code']}")
    for row, f in changed:
        print(
            f"CHANGED {row['severity']} -> {f['severity']} ({row['label']}): {row['entry']}/{row['path']}:"
            f"{row['line']} {row['code']} {f['message'][:160]}"
        )
    for row in lost:
        print(f"GONE ({row['label']}): {row['entry']}/{row['path']}:{row['line']} {row['code']}: {row['why']}")
    info_changes = {k: (labels.get("infos", {}).get(k, 0), v) for k, v in infos.items()}
    info_changes.update({k: (v, 0) for k, v in labels.get("infos", {}).items() if k not in infos})
    for name, (before, now) in sorted(info_changes.items()):
        if before != now:
            print(f"infos changed: {name}: {before} -> {now}")

    if update:
        for row, f in changed:  # the label stays; the severity and message are the current ones, to be re-read
            row["severity"], row["message"] = f["severity"], f["message"]
        labels["findings"] = [row for row in labels["findings"] if key(row) in seen] + new_rows
        labels["findings"].sort(key=lambda r: (r["entry"], r["path"], r.get("cell") or 0, r["line"] or 0, r["code"]))
        labels["infos"] = dict(sorted(infos.items()))
        with open(LABELS, "w", encoding="utf-8") as fh:
            json.dump(labels, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        print(f"wrote {LABELS}: label the new rows")
    false_errors = counts[("error", "false")]
    return 1 if false_errors or new_rows or unlabelled or lost_true or (changed and not update) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("fetch", "check"))
    parser.add_argument("--corpus", required=True, help="folder holding one tree per corpus entry")
    parser.add_argument("--update", action="store_true", help="add new findings to labels.json, unlabelled")
    parser.add_argument("--mirror", help="fetch: read git entries from bare clones MIRROR/OWNER+NAME[/repo]")
    args = parser.parse_args()
    if args.command == "fetch":
        return fetch(args.corpus, args.mirror)
    return compare(os.path.abspath(args.corpus), args.update)


if __name__ == "__main__":
    sys.exit(main())
