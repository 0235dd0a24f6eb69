"""Where runs are stored: the default local sqlite store under ./mlruns, and URI resolution.

MLflow 3 refuses a plain file store, so the default is `sqlite:///<abs>/mlruns/mlflow.db` with
artifacts under `<abs>/mlruns/artifacts`. `--tracking-uri`, the sweep's `tracking.uri` or
MLFLOW_TRACKING_URI override it, in that order.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DEFAULT_ROOT = "mlruns"


def default_root(cwd: str | Path | None = None) -> Path:
    return (Path(cwd or os.getcwd()) / DEFAULT_ROOT).resolve()


def default_tracking_uri(root: str | Path | None = None) -> str:
    root = Path(root).resolve() if root else default_root()
    return f"sqlite:///{root / 'mlflow.db'}"


def default_artifact_location(root: str | Path | None = None) -> str:
    root = Path(root).resolve() if root else default_root()
    return (root / "artifacts").as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file a `sqlite:///PATH` URI names (PATH absolute or relative), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """CLI/YAML value, else MLFLOW_TRACKING_URI, else the local sqlite store under ./mlruns."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast (UsageError) when the tracking store can't be written or reached."""
    from kdtune.errors import UsageError

    db = sqlite_path(uri)
    if db is not None:
        folder = db.parent
        probe = folder
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        try:
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError:
            raise UsageError(f"tracking uri {uri}: {folder} is not writable") from None
        return
    if uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
                return
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            raise UsageError(f"tracking uri {uri}: not reachable ({exc})") from None
