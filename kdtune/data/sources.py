"""Where a dataset comes from: an explicit `data_dir`, else `KDTUNE_DATA_DIR`, else the hub.

`data_dir` (or the env variable) may be
- a folder holding per-dataset subfolders (`massive/`, `tsm/`), or the dataset folder itself;
- an `http(s)://` or `file://` URL of a `.tar.gz`/`.tgz`/`.tar`/`.zip` archive (e.g. the official
  MASSIVE 1.1 release), or a local archive path: it is downloaded ONCE into
  `<cache>/downloads/<sha of url>/` and extracted there (atomically, under a file lock).
The cache is `KDTUNE_CACHE`, else `~/.cache/kdtune`.
`kdtune:sample` names the small MASSIVE sample packaged with kdtune (`kdtune/data/sample/`, see
its NOTICE.md): the demo runs on it offline, wherever kdtune is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from kdtune.errors import UsageError

ENV_DATA_DIR = "KDTUNE_DATA_DIR"
ENV_CACHE = "KDTUNE_CACHE"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
DOWNLOAD_TIMEOUT_S = 30.0
HUB_PROBE_TIMEOUT_S = 5.0
SAMPLE = "kdtune:sample"
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def cache_root() -> Path:
    """`KDTUNE_CACHE` if set, else `~/.cache/kdtune` (read at call time, not import time)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kdtune"


def requested_source(data_dir: str | os.PathLike | None) -> tuple[str | None, str]:
    """The raw source string and where it came from ("data_dir", "KDTUNE_DATA_DIR" or "hub")."""
    if data_dir is not None and str(data_dir) != "":
        return str(data_dir), "data_dir"
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return env, ENV_DATA_DIR
    return None, "hub"


def is_url(source: str) -> bool:
    return source.split("://", 1)[0].lower() in ("http", "https", "file") and "://" in source


def is_archive(source: str) -> bool:
    return source.lower().split("?", 1)[0].endswith(ARCHIVE_SUFFIXES)


def expand(source: str) -> str:
    """`kdtune:sample` -> the packaged sample's folder; any other source unchanged."""
    return str(SAMPLE_DIR) if str(source).strip() == SAMPLE else str(source)


def local_folder(source: str, origin: str) -> Path:
    """The folder to search for a dataset layout; archives and URLs are fetched and extracted."""
    source = expand(source)
    if is_url(source):
        return fetch_archive(source)
    path = Path(source).expanduser()
    if path.is_file() and is_archive(source):
        return fetch_archive(path.resolve().as_uri())
    if not path.is_dir():
        raise UsageError(f"{origin} {source} is not a folder, an archive or a URL")
    return path


def fetch_archive(url: str) -> Path:
    """Download `url` once into the cache and extract it; return the extracted folder.

    A finished extraction is a folder named `extracted`; it only appears by an atomic rename, so
    a crash mid-download leaves nothing that looks complete. Concurrent callers serialize on a
    file lock and the second one finds the folder already there.
    """
    from kdtune.atomic import build_once

    slot = cache_root() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16]
    done = slot / "extracted"

    def download_and_extract(work: Path) -> None:
        (slot / "url.txt").write_text(url + "\n", encoding="utf-8")
        archive = slot / (url.rsplit("/", 1)[-1].split("?", 1)[0] or "archive")
        if not archive.is_file():
            _download(url, archive)
        work.mkdir()
        _extract(archive, work)

    build_once(done, download_and_extract)
    return done


def _download(url: str, target: Path) -> None:
    part = target.with_name(target.name + f".part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(part, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise UsageError(
            f"cannot download {url} ({reason}); pass a local folder as data_dir or {ENV_DATA_DIR}"
        ) from None


def _extract(archive: Path, into: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():  # refuse absolute paths and `..` escapes
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise UsageError(f"{archive}: unsafe member path {member!r}")
                zf.extractall(into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")
        else:
            raise UsageError(f"{archive}: not a tar or zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"{archive}: cannot extract ({exc})") from None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def check_hub(dataset: str, repo_id: str) -> None:
    """Fail fast, in one line, when the hub cannot be reached (offline flag set, or no answer).

    `datasets` itself retries for a long time on a dead network; a single short HEAD request
    first keeps the offline failure under a few seconds.
    """
    remedy = (
        f"pass data_dir (--data-dir) or set {ENV_DATA_DIR} to a folder holding {dataset}/"
    )
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if _truthy(flag):
            raise UsageError(
                f"dataset {dataset}: no local data given and the Hugging Face hub is off "
                f"({flag}=1), so {repo_id} cannot be fetched; {remedy}"
            )
    url = f"{hub_endpoint()}/api/datasets/{repo_id}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S)
    except urllib.error.HTTPError:
        return  # the hub answered (even 4xx): it is reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UsageError(
            f"dataset {dataset}: no local data given and the Hugging Face hub is unreachable "
            f"({reason}) so {repo_id} cannot be fetched; {remedy}"
        ) from None


def hub_failure(dataset: str, repo_id: str, exc: BaseException) -> UsageError:
    """One-line error for a hub load that failed after the probe succeeded."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return UsageError(
        f"dataset {dataset}: loading {repo_id} from the Hugging Face hub failed ({first}); "
        f"pass data_dir (--data-dir) or set {ENV_DATA_DIR} to a local copy"
    )
