"""Hub repositories checked before they are downloaded: `hf://ORG/NAME[@REVISION]`, staged as a local folder.

- The file list and the commit come from the Hub API (the model info with file sizes, as `model_info` asks).
- The small files rules read (configs, tokenizers, training YAML, sources, notebooks) are downloaded with
  huggingface_hub's `hf_hub_download` into its cache, as transformers would, and linked into the staged folder.
- A safetensors file is represented by its header, read with HTTP range requests and written at the start of a
  sparse file of the real size: the local reader sees the header and the size it would see on disk. The target
  is told these files hold no data, so the rules that read rows skip them. GGUF files the same way, their
  metadata read in growing ranges until the parser has all of it.
- Pickle checkpoints must be read to the end to be scanned: downloaded only when the user allows it, their size
  said first.
- Every byte read from the network is counted. The file list and the header bytes are cached by commit, so a
  second check, or one under HF_HUB_OFFLINE=1, reads nothing from the network.

Nothing here runs unless a path names the Hub: huggingface_hub is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from ttsdoctor.artifacts.adapter import hf_hub_cache
from ttsdoctor.artifacts.errors import ArtifactError, human_bytes
from ttsdoctor.finding import Applicability, Finding, Fix
from ttsdoctor.fsio import atomic_write, write_bytes
from ttsdoctor.limits import limit, over

SCHEME = "hf://"
# huggingface_hub's validate_repo_id: letters, digits, "-", "_", "."; no "--" or ".." (max 96 characters a part)
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
REPO_ID = re.compile(rf"{_PART}/{_PART}")
COMMIT = re.compile(r"[0-9a-f]{40}")
# files rules read, downloaded whole; everything else that is not a weight file is not needed by any rule
SMALL_SUFFIXES = (".json", ".yaml", ".yml", ".py", ".ipynb", ".txt", ".model", ".toml", ".cfg", ".jinja")
HEADER_SUFFIXES = (".safetensors", ".gguf")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
FIRST_RANGE = 100_000  # what huggingface_hub's get_safetensors_metadata asks first: most headers fit
GGUF_FIRST_RANGE = 1 << 20
SPARSE_SLACK = 1 << 20  # a staged file may take this much more disk than its header before it counts as not sparse


class HubError(Exception):
    """A repository that cannot be checked at all (not found, gated, refused token, offline, unreachable)."""


class HubRef(msgspec.Struct, frozen=True):
    repo_id: str
    revision: str | None  # None: the default branch

    @property
    def text(self) -> str:
        return f"{SCHEME}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def parse_ref(text: str, bare: bool = False) -> HubRef | None:
    """The Hub repository a command-line path names: `hf://ORG/NAME[@REVISION]`, or with `bare` also `ORG/NAME`
    when no such local path exists. None for a local path; HubError for a malformed Hub path."""
    if text.startswith(SCHEME):
        rest = text[len(SCHEME) :]
    elif bare and not os.path.lexists(text) and REPO_ID.fullmatch(text.partition("@")[0]):
        rest = text
    else:
        return None
    name, at, revision = rest.partition("@")
    name = name.rstrip("/")
    if not REPO_ID.fullmatch(name) or ".." in name or "--" in name:
        raise HubError(f"{text}: not a Hub repository id (hf://ORG/NAME[@REVISION])")
    if at and not revision:
        raise HubError(f"{text}: the revision after '@' is empty")
    return HubRef(name, revision or None)


class RepoFile(msgspec.Struct, frozen=True):
    name: str  # path in the repository, "/"-separated
    size: int


class Staged(msgspec.Struct):
    """A Hub repository as a local folder for the rules, with what was read to make it."""

    ref: HubRef
    commit: str
    folder: str  # stands for the repository's root
    files: list[RepoFile]
    fetched: int = 0  # bytes read from the network in this run
    cached: int = 0  # files (or headers) taken from the caches
    header_only: set[str] = set()  # staged weight files that hold their header only
    skipped: list[tuple[str, int, str]] = []  # (name, size, why not checked)
    errors: list[ArtifactError] = []  # files that could not be read

    @property
    def label(self) -> str:
        """What stands for the staged folder in the report: the repository at the commit checked."""
        return f"{SCHEME}{self.ref.repo_id}@{self.commit}"

    @property
    def repo_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def summary(self) -> dict[str, Any]:
        return {
            "repository": self.ref.text,
            "commit": self.commit,
            "files": len(self.files),
            "repository_bytes": self.repo_bytes,
            "bytes_downloaded": self.fetched,
            "from_cache": self.cached,
            "not_checked": [{"path": n, "bytes": s, "why": why} for n, s, why in self.skipped],
        }

    def relabel(self, text: str) -> str:
        return text.replace(self.folder, self.label)


# --- settings read at call time (huggingface_hub reads its own once, at import) ----------------------------


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def _timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 10)
    except ValueError:
        return 10.0


def own_cache() -> str:
    """ttsdoctor's cache: file lists and header bytes by commit (TTSDOCTOR_CACHE, else XDG_CACHE_HOME/ttsdoctor)."""
    if os.environ.get("TTSDOCTOR_CACHE"):
        return os.path.expanduser(os.environ["TTSDOCTOR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ttsdoctor")


def _repo_cache(repo_id: str) -> str:
    return os.path.join(own_cache(), "hub", "models--" + repo_id.replace("/", "--"))


# --- errors ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _hub_errors(ref: HubRef) -> Iterator[None]:
    """huggingface_hub's and httpx's exceptions as one sentence each (never a URL with credentials, never a token)."""
    import httpx2
    from huggingface_hub import errors

    where = ref.text
    try:
        yield
    except errors.GatedRepoError:
        raise HubError(
            f"{where} is gated: accept its conditions on its Hub page, then log in (`hf auth login` or HF_TOKEN)"
        ) from None
    except errors.RepositoryNotFoundError as exc:
        if exc.response is not None and exc.response.status_code == 401 and _token_sent():
            raise HubError(f"{where}: the Hub refused the token (401): log in again or check HF_TOKEN") from None
        raise HubError(
            f"{where}: repository not found (a private repository needs a token: `hf auth login` or HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{where}: revision {ref.revision!r} not found") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            raise HubError(f"{where}: access refused by the Hub ({status}): log in or check the token") from None
        raise HubError(f"{where}: the Hub answered HTTP {status}") from None
    except httpx2.TimeoutException:
        raise HubError(
            f"{where}: no answer from {_endpoint()} within {_timeout():g} s (raise HF_HUB_DOWNLOAD_TIMEOUT)"
        ) from None
    except (httpx2.TransportError, errors.OfflineModeIsEnabled) as exc:
        raise HubError(f"{where}: cannot reach {_endpoint()} ({type(exc).__name__})") from None


def _token_sent() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


# --- the file list -------------------------------------------------------------------------------------------


def _safe_name(name: object) -> bool:
    """A repository path that stays inside the staged folder (a server's list is input like any other)."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _parse_listing(ref: HubRef, doc: Any) -> tuple[str, list[RepoFile]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("sha"), str) or not COMMIT.fullmatch(doc["sha"]):
        raise HubError(f"{ref.text}: the Hub's answer has no commit sha")
    siblings = doc.get("siblings")
    if not isinstance(siblings, list):
        raise HubError(f"{ref.text}: the Hub's answer has no file list")
    files = []
    for entry in siblings:
        if not isinstance(entry, dict):
            continue
        name, size = entry.get("rfilename"), entry.get("size")
        lfs = entry.get("lfs")
        if isinstance(lfs, dict) and isinstance(lfs.get("size"), int):
            size = lfs["size"]
        if isinstance(name, str) and isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            files.append(RepoFile(name, size))
    return doc["sha"], files


def _listing(ref: HubRef) -> tuple[str, list[RepoFile], int]:
    """(commit, files, bytes read) of the revision: from the Hub, or from the cache when offline or already listed."""
    cache = _repo_cache(ref.repo_id)
    revision = ref.revision or "main"
    commit = revision if COMMIT.fullmatch(revision) else None
    if commit is None and offline():
        commit = _cached_ref(ref.repo_id, revision)
    if commit is not None:
        listed = os.path.join(cache, commit, "files.json")
        with contextlib.suppress(OSError, ValueError, HubError), open(listed, encoding="utf-8") as fh:
            return (*_parse_listing(ref, json.load(fh)), 0)  # a damaged cache entry is read again from the Hub
    if offline():
        raise HubError(f"{ref.text}: HF_HUB_OFFLINE is set and this revision was never checked on this machine")
    from urllib.parse import quote

    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = f"{_endpoint()}/api/models/{ref.repo_id}/revision/{quote(revision, safe='')}"
    with _hub_errors(ref):
        response = get_session().get(url, headers=build_hf_headers(), params={"blobs": True}, timeout=_timeout())
        hf_raise_for_status(response)
    try:
        doc = response.json()
    except ValueError:
        raise HubError(f"{ref.text}: the Hub's answer is not JSON") from None
    commit, files = _parse_listing(ref, doc)
    with contextlib.suppress(OSError):
        os.makedirs(os.path.join(cache, commit), exist_ok=True)
        atomic_write(
            os.path.join(cache, commit, "files.json"), functools.partial(write_bytes, json.dumps(doc).encode())
        )
        os.makedirs(os.path.join(cache, "refs"), exist_ok=True)
        if not COMMIT.fullmatch(revision):
            atomic_write(
                os.path.join(cache, "refs", quote(revision, safe="")), functools.partial(write_bytes, commit.encode())
            )
    return commit, files, len(response.content)


def _cached_ref(repo_id: str, revision: str) -> str | None:
    """The commit a branch or tag pointed to when last seen: ttsdoctor's cache, then huggingface_hub's."""
    from urllib.parse import quote

    folder = "models--" + repo_id.replace("/", "--")
    for path in (
        os.path.join(_repo_cache(repo_id), "refs", quote(revision, safe="")),
        os.path.join(hf_hub_cache(), folder, "refs", revision),
    ):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with open(path, encoding="utf-8") as fh:
                commit = fh.read().strip()
            if COMMIT.fullmatch(commit):
                return commit
    return None


# --- reading ---------------------------------------------------------------------------------------------------


class _Reader:
    """Range reads of one repository at one commit, counted, with the header bytes cached by commit."""

    def __init__(self, staged: Staged):
        self.staged = staged
        self.cache = os.path.join(_repo_cache(staged.ref.repo_id), staged.commit, "headers")

    def range(self, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file; ArtifactError when the Hub sends fewer."""
        import httpx2
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        ref = self.staged.ref
        url = hf_hub_url(ref.repo_id, name, revision=self.staged.commit, endpoint=_endpoint())
        headers = {**build_hf_headers(), "Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        want = end - start
        chunks: list[bytes] = []
        got = 0
        with _hub_errors(ref), get_session().stream("GET", url, headers=headers, timeout=_timeout()) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            skip = start if response.status_code == 200 else 0  # a server that ignores Range sends the whole file
            try:
                for chunk in response.iter_bytes():
                    self.staged.fetched += len(chunk)
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    chunks.append(chunk[: want - got])
                    got += len(chunks[-1])
                    if got >= want:
                        break
            except (httpx2.RemoteProtocolError, httpx2.ReadError):
                pass  # the connection closed early: what arrived is judged below
        data = b"".join(chunks)
        if len(data) < want:
            raise ArtifactError(
                f"{self.staged.folder}/{name}",
                f"the Hub sent {len(data)} of the {want} bytes asked for (bytes {start}-{end - 1}): truncated response",
            )
        return data

    def cached_prefix(self, name: str) -> bytes | None:
        with contextlib.suppress(OSError):
            with open(os.path.join(self.cache, name), "rb") as fh:
                data = fh.read()
            self.staged.cached += 1
            return data
        return None

    def keep_prefix(self, name: str, data: bytes) -> None:
        path = os.path.join(self.cache, name)
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, functools.partial(write_bytes, data))


def _safetensors_prefix(reader: _Reader, f: RepoFile) -> bytes:
    """The 8-byte length and the JSON header (or what there is of them: the local reader reports the problem)."""
    first = reader.range(f.name, 0, min(f.size, FIRST_RANGE)) if f.size else b""
    if len(first) < 8:
        return first
    (n,) = struct.unpack("<Q", first[:8])
    if n > limit("safetensors_header_bytes"):
        return first  # refused by the reader, as on disk
    end = min(8 + n, f.size)
    if end > len(first):
        first += reader.range(f.name, len(first), end)
    return first[:end]


def _gguf_prefix(reader: _Reader, f: RepoFile, path: str) -> bytes:
    """As many first bytes as the GGUF parser needs for the metadata and tensor infos, read in growing ranges."""
    from ttsdoctor.artifacts.gguf_file import NeedMore, parse_prefix

    prefix = reader.range(f.name, 0, min(f.size, GGUF_FIRST_RANGE)) if f.size else b""
    while True:
        try:
            parse_prefix(path, prefix, f.size)
            return prefix
        except NeedMore as more:
            end = min(f.size, max(more.end + (64 << 10), 2 * len(prefix)))
            if end > limit("hub_header_bytes"):
                raise ArtifactError(path, f"GGUF metadata of {over('hub_header_bytes', more.end)}") from None
            prefix += reader.range(f.name, len(prefix), end)
        except ArtifactError:
            return prefix  # the local reader finds the same problem in the staged file


def _stage_header(reader: _Reader, f: RepoFile, path: str) -> None:
    prefix = reader.cached_prefix(f.name)
    if prefix is None:
        prefix = _safetensors_prefix(reader, f) if f.name.endswith(".safetensors") else _gguf_prefix(reader, f, path)
        reader.keep_prefix(f.name, prefix)
    with open(path, "wb") as fh:
        fh.write(prefix)
        fh.truncate(f.size)  # the rest is a hole: no disk used, reads as zeros, never read by the rules
    used = os.stat(path).st_blocks * 512
    if used > len(prefix) + SPARSE_SLACK:
        os.unlink(path)
        raise HubError(
            f"the file system of {os.path.dirname(path)} does not keep sparse files ({f.name} took "
            f"{human_bytes(used)}): set TTSDOCTOR_CACHE to a folder on ext4, xfs, btrfs or tmpfs"
        )


def _download(staged: Staged, f: RepoFile, path: str) -> None:
    """A whole file through huggingface_hub's cache, linked (or copied) into the staged folder."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    ref = staged.ref
    cache = hf_hub_cache()
    cached = try_to_load_from_cache(ref.repo_id, f.name, cache_dir=cache, revision=staged.commit)
    if isinstance(cached, str):
        source = cached
        staged.cached += 1
    elif offline():
        raise HubError(f"{ref.text}: HF_HUB_OFFLINE is set and {f.name} is not in the cache")
    else:
        with _hub_errors(ref):
            source = hf_hub_download(
                ref.repo_id,
                f.name,
                revision=staged.commit,
                cache_dir=cache,
                endpoint=_endpoint(),
                etag_timeout=_timeout(),
            )
        staged.fetched += f.size
    real = os.path.realpath(source)
    try:
        os.link(real, path)
    except OSError:
        shutil.copyfile(real, path)


def _plan(f: RepoFile, download_pickles: bool) -> str | None:
    """What to do with a repository file: 'header', 'download', why it is not checked, or None when no rule reads
    such a file."""
    base = f.name.rsplit("/", 1)[-1]
    if base.startswith(".") or base == "README.md":
        return None
    if f.name.endswith(HEADER_SUFFIXES):
        if base == "adapter_model.safetensors" and f.size <= limit("hub_file_bytes"):
            return "download"  # small, and the adapter rules read its rows
        return "header"
    if f.name.endswith(PICKLE_SUFFIXES):
        if download_pickles or f.size == 0:  # an empty one costs nothing to fetch, and ART004 or ART001 reports it
            return "download"
        return "a pickle checkpoint is scanned only when downloaded whole: pass --download-pickles"
    if f.name.endswith(SMALL_SUFFIXES):
        if f.size > limit("hub_file_bytes"):
            return over("hub_file_bytes", f.size)
        return "download"
    return None


def stage(
    ref: HubRef, workdir: str, download_pickles: bool = False, say: Callable[[str], None] | None = None
) -> Staged:
    """Stage the repository under `workdir` (which the caller removes). HubError when it cannot be checked."""
    folder = os.path.join(workdir, *ref.repo_id.split("/"))
    commit, files, listed = _listing(ref)
    staged = Staged(ref, commit, folder, files, fetched=listed)
    os.makedirs(folder)
    reader = _Reader(staged)
    fetched_files = 0
    if download_pickles and say is not None:
        pickles = [f for f in staged.files if f.name.endswith(PICKLE_SUFFIXES)]
        if pickles:
            total = sum(f.size for f in pickles)
            say(f"{ref.text}: downloading {len(pickles)} pickle checkpoint(s), {human_bytes(total)}, to scan them")
    for f in staged.files:
        plan = _plan(f, download_pickles)
        if plan is None:
            continue
        if plan not in ("header", "download"):
            staged.skipped.append((f.name, f.size, plan))
            continue
        if not _safe_name(f.name):
            staged.skipped.append((repr(f.name), f.size, "a path that leaves the repository"))
            continue
        if fetched_files >= limit("hub_files"):
            staged.skipped.append((f.name, f.size, over("hub_files", len(staged.files))))
            continue
        fetched_files += 1
        path = os.path.join(folder, *f.name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            if plan == "header":
                _stage_header(reader, f, path)
                staged.header_only.add(path)
            else:
                _download(staged, f, path)
        except ArtifactError as exc:
            staged.errors.append(exc)
        except OSError as exc:  # a size the local file system cannot hold, a full disk
            staged.errors.append(ArtifactError(path, f"cannot stage it here: {exc.strerror or exc}"))
    return staged


@contextlib.contextmanager
def workspace() -> Iterator[str]:
    """A folder for staged repositories, removed afterwards. Under ttsdoctor's cache when it can be made there
    (beside huggingface_hub's cache, so downloaded files are hard-linked rather than copied)."""
    base = os.path.join(own_cache(), "staging")
    try:
        os.makedirs(base, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix="check-", dir=base)
    except OSError:
        workdir = tempfile.mkdtemp(prefix="ttsdoctor-hub-")
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def targets(staged: list[Staged]) -> list[Any]:
    """The targets of the staged repositories, each told which of its weight files hold a header only."""
    from ttsdoctor.discover import discover

    out = []
    for s in staged:
        header_only = frozenset(s.header_only)
        out += [msgspec.structs.replace(t, header_only=header_only) for t in discover([s.folder])]
    return out


def named_ids(targets: list[Any]) -> list[str]:
    """The Hub ids the training configs among `targets` name (`model_name_or_path: org/name` ...), in order."""
    from ttsdoctor.artifacts.training_config import load_training_config

    ids: dict[str, None] = {}
    for target in targets:
        if target.kind != "training_config":
            continue
        try:
            config = load_training_config(target.path, target.root)
        except ArtifactError:
            continue  # reported by the check itself
        for named in config.named_files:
            if named.remote and REPO_ID.fullmatch(named.entry.value):
                ids[named.entry.value] = None
    return list(ids)


def with_hub_folders(targets: list[Any], staged: list[Staged]) -> list[Any]:
    """Training config targets told where the Hub ids they name are staged (and which files hold headers only)."""
    folders = tuple((s.ref.repo_id, s.folder) for s in staged)
    header_only = frozenset(p for s in staged for p in s.header_only)
    return [
        msgspec.structs.replace(t, hub_folders=folders, header_only=t.header_only | header_only)
        if t.kind == "training_config"
        else t
        for t in targets
    ]


# --- the report ------------------------------------------------------------------------------------------------


def _relabel_value(value: Any, staged: Staged) -> Any:
    if isinstance(value, str):
        return staged.relabel(value)
    if isinstance(value, list | tuple):
        return type(value)(_relabel_value(v, staged) for v in value)
    if isinstance(value, dict):
        return {k: _relabel_value(v, staged) for k, v in value.items()}
    return value


def relabel(finding: Finding, staged: Staged) -> Finding:
    """The finding as it reads for the repository: hf:// paths, and fixes shown, never applied (the Hub is not ours
    to write)."""
    if staged.folder not in finding.location.path and staged.folder not in finding.message:
        return finding
    fix = finding.fix
    if fix is not None:
        fix = Fix(staged.relabel(fix.title), Applicability.DISPLAY_ONLY)
    return msgspec.structs.replace(
        finding,
        message=staged.relabel(finding.message),
        location=msgspec.structs.replace(finding.location, path=staged.relabel(finding.location.path)),
        evidence=_relabel_value(finding.evidence, staged),
        fix=fix,
    )


def error_findings(staged: Staged) -> list[Finding]:
    """The files that could not be read, as the findings an unreadable local file gives."""
    from ttsdoctor.artifacts.errors import BrokenTarget
    from ttsdoctor.checks.artifacts import UnreadableArtifact

    if not staged.errors:
        return []
    broken = BrokenTarget(staged.folder, list(staged.errors))
    return [relabel(f, staged) for f in UnreadableArtifact().check(broken)]


def _label_of(path: str, staged: list[Staged]) -> str:
    for s in staged:
        if path == s.folder or path.startswith(s.folder + os.sep):
            return s.relabel(path)
    return path


def relabel_result(result: Any, staged: list[Staged]) -> None:
    """A check of staged folders as a check of the repositories: hf:// paths everywhere, the files that could not be
    read as findings, and what was read (`result.remote`)."""
    target_of = dict(result.target_of)
    findings = []
    for finding in result.findings:
        new = finding
        for s in staged:
            new = relabel(new, s)
        findings.append(new)
        if finding in target_of:
            result.target_of[new] = _label_of(target_of[finding], staged)
    for s in staged:
        for finding in error_findings(s):
            findings.append(finding)
            result.target_of[finding] = s.label
    result.findings = sorted(findings, key=Finding.sort_key)
    result.loaded = [msgspec.structs.replace(c, path=_label_of(c.path, staged)) for c in result.loaded]
    result.remote = [s.summary() for s in staged]
