"""Build once under a file lock, then rename into place: the one way kdtune makes a cached folder.

Used by the teacher store, the teacher-output cache, presets, downloaded archives and the Arrow
cache. Readers never see a half-built folder: it is written at a temporary sibling
(`.<name>.tmp-<pid>`) and appears at its final path only by an atomic rename. Two processes never
build the same folder twice: the second one waits on the lock and then finds it done.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def build_once(
    final: Path,
    build: Callable[[Path], None],
    done: Callable[[Path], bool] = Path.is_dir,
    then: Callable[[Path], None] | None = None,
) -> bool:
    """Make `final` by `build(work)` unless `done(final)`; return whether this call built it.

    `work` does not exist when `build` is called (it creates it). A folder at `final` that is not
    `done` (no marker) is never valid and is removed first; so are temporaries of killed builders.
    A build that raises an ordinary exception leaves nothing; a kill leaves its temporary for the
    next builder to clear. `then(final)` runs after the rename, still under the lock.
    """
    from filelock import FileLock

    if done(final):
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if done(final):  # another process finished it while this one waited
            return False
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            shutil.rmtree(final)
        work = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        try:
            build(work)
        except Exception:
            shutil.rmtree(work, ignore_errors=True)
            raise
        os.replace(work, final)
        if then is not None:
            then(final)
    return True
