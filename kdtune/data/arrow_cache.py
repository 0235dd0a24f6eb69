"""Parsed datasets cached as Arrow folders, keyed by the source files' paths, sizes and mtimes.

Parsing all 52 MASSIVE locales from JSON takes seconds; reading the cached Arrow folder back
(memory-mapped by `datasets.load_from_disk`) takes well under one. The key changes whenever a
source file is replaced, grows or is touched, and with `FORMAT_VERSION` when the parsing changes.
A cache entry appears only by an atomic rename of a finished folder, under a file lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import datasets

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from kdtune.atomic import build_once
from kdtune.quiet import no_progress_bars
from kdtune.data.sources import cache_root

FORMAT_VERSION = 1


def files_key(kind: str, files: Iterable[Path]) -> str:
    """A short hash of (kind, format version, each file's absolute path, size and mtime)."""
    stats = []
    for path in sorted(Path(p).resolve() for p in files):
        st = path.stat()
        stats.append([str(path), st.st_size, st.st_mtime_ns])
    blob = json.dumps([kind, FORMAT_VERSION, stats], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def cached(kind: str, key: str, build: Callable[[], "datasets.DatasetDict"]) -> "datasets.DatasetDict":
    """Load `<cache>/datasets/<kind>-<key>` or build, save and load it."""
    import datasets

    final = cache_root() / "datasets" / f"{kind}-{key}"

    def save(work: Path) -> None:
        built = build()
        with no_progress_bars():
            # One shard per split: datasets writes no shard for an empty split by default, and
            # then cannot load it back.
            built.save_to_disk(str(work), num_shards={split: 1 for split in built})

    build_once(final, save)
    return datasets.load_from_disk(str(final))
