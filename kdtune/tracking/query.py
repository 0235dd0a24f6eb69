"""Reading kdtune runs back from MLflow as plain records, for `kdtune report`.

Only `mlflow.tracking.MlflowClient` is used (no fluent API, no global active run), so the same code
reads a local sqlite store and a remote tracking server. mlflow is imported inside the functions:
importing `TrialRecord` from here (as `kdtune.report` does for type hints) stays cheap and
mlflow-free.

Conventions:
- A record's `params` are MLflow's strings as logged; `metrics` are the latest value of each key
  (for per-step keys such as `train_loss` that is the last step; use `fetch_history` for curves).
- `status` is MLflow's run status (FINISHED, FAILED, RUNNING, KILLED, SCHEDULED); callers decide
  which to count. Deleted runs and deleted experiments are invisible.
- Every user-fixable problem (unknown experiment, an experiment without trial runs, a store that
  does not exist or a server that does not answer) raises `UsageError` with one line.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from kdtune.errors import UsageError

from kdtune.tracking.store import sqlite_path
from kdtune.tracking.tags import KIND as KIND_TAG, PARENT_RUN as PARENT_TAG, RUN_NAME

# A reachability probe must answer within seconds, not after MLflow's default 7 retries with
# exponential back-off (minutes).
PROBE_TIMEOUT_S = 5
PAGE_SIZE = 1000


@dataclass(frozen=True)
class TrialRecord:
    """One MLflow run as plain data (params are strings, metrics are final values)."""

    run_id: str
    run_name: str
    experiment: str
    status: str
    kind: str = "trial"
    parent_run_id: str | None = None
    start_time: int = 0  # ms since the epoch, MLflow's convention
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # kdtune's and MLflow's, as logged


@contextmanager
def _fast_fail_http() -> Iterator[None]:
    """No retries and a short timeout for HTTP requests, for the duration of a probe."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(PROBE_TIMEOUT_S)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _reason(exc: BaseException, limit: int = 160) -> str:
    """A short reason: the usual network failures by name, else the message's start."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    if "connection refused" in lowered or "failed to establish a new connection" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return f"no answer within {PROBE_TIMEOUT_S} s"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def connect(tracking_uri: str):
    """An MlflowClient for `tracking_uri`, after checking (within seconds) that the store answers.

    A sqlite URI must name an existing database file: reading must never create an empty store.
    """
    parsed = urlparse(tracking_uri)
    db = sqlite_path(tracking_uri)
    if db is not None and str(db) not in ("", ":memory:") and not db.is_file():
        raise UsageError(f"no MLflow store at {db} (tracking URI {tracking_uri}); pass --tracking-uri")
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        with _fast_fail_http():
            client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot read this store"
        if parsed.scheme in ("http", "https"):
            raise UsageError(f"tracking server {tracking_uri} is unreachable ({_reason(exc)})") from exc
        raise UsageError(f"cannot read tracking store {tracking_uri} ({_reason(exc)})") from exc
    return client


def _experiment(client, name: str, tracking_uri: str):
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage != "active":
        known = sorted(e.name for e in client.search_experiments(max_results=50))
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise UsageError(f"unknown experiment '{name}' at {tracking_uri}; known: {shown or 'none'}")
    return exp


def _search_all(client, experiment_ids: list[str], filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=PAGE_SIZE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _record(run, experiment_name: str) -> TrialRecord:
    tags = run.data.tags
    return TrialRecord(
        run_id=run.info.run_id,
        run_name=run.info.run_name or tags.get(RUN_NAME, ""),
        experiment=experiment_name,
        status=run.info.status,
        kind=tags.get(KIND_TAG, ""),
        parent_run_id=tags.get(PARENT_TAG),
        start_time=int(run.info.start_time or 0),
        params=dict(run.data.params),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        tags=dict(tags),
    )


def fetch_runs(tracking_uri: str, experiment_names: list[str], kind: str | None = None) -> list[TrialRecord]:
    """All runs of the named experiments (any status), optionally only those tagged kdtune.kind=kind."""
    if not experiment_names:
        raise UsageError("--experiment: give at least one experiment name")
    client = connect(tracking_uri)
    filter_string = f"tags.`{KIND_TAG}` = '{kind}'" if kind else ""
    records: list[TrialRecord] = []
    for name in experiment_names:
        exp = _experiment(client, name, tracking_uri)
        records.extend(_record(run, name) for run in _search_all(client, [exp.experiment_id], filter_string))
    return records


def fetch_trials(tracking_uri: str, experiment_names: list[str]) -> list[TrialRecord]:
    """Trial runs (tag kdtune.kind=trial) of every named experiment, any status.

    An experiment without a single trial run is a user error (wrong name or an empty sweep).
    """
    records = fetch_runs(tracking_uri, experiment_names, kind="trial")
    for name in experiment_names:
        if not any(r.experiment == name for r in records):
            raise UsageError(
                f"experiment '{name}' at {tracking_uri} has no trial runs (tag {KIND_TAG}=trial)"
            )
    return records


def fetch_history(tracking_uri: str, run_ids: list[str], key: str) -> dict[str, list[tuple[int, float]]]:
    """Per run, the metric's history as (step, value) pairs sorted by step (empty if never logged)."""
    client = connect(tracking_uri)
    history: dict[str, list[tuple[int, float]]] = {}
    for run_id in run_ids:
        points = client.get_metric_history(run_id, key)
        history[run_id] = sorted((int(m.step), float(m.value)) for m in points)
    return history


def sweep_run_ids(tracking_uri: str, experiment_name: str) -> list[str]:
    """Run ids of the sweep parent runs (tag kdtune.kind=sweep) of one experiment."""
    return [r.run_id for r in fetch_runs(tracking_uri, [experiment_name], kind="sweep")]


def log_report_artifacts(
    tracking_uri: str,
    run_id: str,
    folder: str | Path,
    files: list[str | Path] | None = None,
    artifact_path: str = "report",
) -> None:
    """Upload the report as artifacts of `run_id` under `artifact_path`.

    With `files`, only those (paths inside `folder`) go up, so unrelated files that happen to sit
    in the output folder are not published; without, the whole folder does.
    """
    client = connect(tracking_uri)
    if files is None:
        client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)
        return
    root = Path(folder).resolve()
    for path in files:
        path = Path(path).resolve()
        sub = path.parent.relative_to(root).as_posix()
        client.log_artifact(run_id, str(path), artifact_path=artifact_path if sub == "." else f"{artifact_path}/{sub}")
