"""Writing runs: the sweep's parent run, one run per teacher, one nested child run per trial.

Uses `MlflowClient` with explicit run ids (no fluent "active run" state), so the driver and every
Ray worker can write to the same run safely, and a resumed sweep can reattach to old runs.
`Tracker` is a small picklable value (URI + experiment id) that workers rebuild a client from.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from kdtune.config.params import param_text  # noqa: E402
from kdtune.tracking.store import default_artifact_location, default_tracking_uri, sqlite_path  # noqa: E402
from kdtune.tracking.tags import CONFIG_HASH, EXPERIMENT_KIND, KIND, PARENT_RUN, SWEEP, TRAINING_KIND  # noqa: E402

MAX_PARAM_LEN = 6000


@dataclass(frozen=True)
class Tracker:
    uri: str
    experiment_id: str

    @classmethod
    def open(cls, uri: str, experiment: str) -> "Tracker":
        """Get or create the experiment (artifacts under mlruns/ for the default local store)."""
        db = sqlite_path(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            location = None
            if db is not None and db.name == "mlflow.db":
                location = default_artifact_location(db.parent)
            try:
                exp_id = client.create_experiment(experiment, artifact_location=location)
            except Exception:  # created by a concurrent process in the meantime
                exp = client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            exp_id = exp.experiment_id
        if exp is None or EXPERIMENT_KIND not in exp.tags:  # MLflow 3's UI: open on the training runs
            client.set_experiment_tag(exp_id, EXPERIMENT_KIND, TRAINING_KIND)
        return cls(uri, exp_id)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    # --- runs -------------------------------------------------------------------------------

    def find_runs(self, filter_string: str) -> list:
        client, out, token = self.client, [], None
        while True:
            page = client.search_runs([self.experiment_id], filter_string, max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def find_sweep_run(self, name: str):
        """The newest parent run of sweep `name` (an MLflow Run), or None."""
        runs = self.find_runs(f"tags.`{KIND}` = 'sweep' and tags.`{SWEEP}` = '{name}'")
        return max(runs, key=lambda r: r.info.start_time) if runs else None

    def sweep_run(self, name: str) -> tuple[str, bool]:
        """The parent run for sweep `name`: reattach to the newest one, else create. (id, created)"""
        run = self.find_sweep_run(name)
        if run is not None:
            if run.info.status != "RUNNING":
                self.client.update_run(run.info.run_id, status="RUNNING")
            return run.info.run_id, False
        run = self.client.create_run(self.experiment_id, run_name=name, tags={KIND: "sweep", SWEEP: name})
        return run.info.run_id, True

    def trial_runs(self, sweep_run_id: str) -> list:
        return self.find_runs(f"tags.`{PARENT_RUN}` = '{sweep_run_id}'")

    def start_run(self, name: str, tags: dict[str, str], parent: str | None = None, run_id: str | None = None) -> str:
        """Create a run, or mark an existing one RUNNING again (a resumed or retried trial)."""
        client = self.client
        if run_id:
            client.update_run(run_id, status="RUNNING")
            return run_id
        tags = dict(tags)
        if parent:
            tags[PARENT_RUN] = parent
        return client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def tags(self, run_id: str) -> dict[str, str]:
        return self.client.get_run(run_id).data.tags

    def delete_tags(self, run_id: str, keys: Iterable[str]) -> None:
        client = self.client
        for key in keys:
            client.delete_tag(run_id, key)

    # --- data -------------------------------------------------------------------------------

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        existing = self.client.get_run(run_id).data.params
        items = [Param(k, _param_value(v)) for k, v in params.items() if k not in existing]
        for chunk in _chunks(items, 100):
            self.client.log_batch(run_id, params=chunk)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(run_id, metrics=chunk)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_dict(self, run_id: str, data: Any, artifact_file: str) -> None:
        self.log_text(run_id, json.dumps(data, indent=2, sort_keys=True, default=str), artifact_file)

    def log_table_csv(self, run_id: str, header: list[str], rows: Iterable[Iterable[Any]], artifact_file: str) -> None:
        lines = [",".join(header)] + [",".join(str(c) for c in row) for row in rows]
        self.log_text(run_id, "\n".join(lines) + "\n", artifact_file)

    def log_folder(self, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)


def _param_value(v: Any) -> str:
    return param_text(v)[:MAX_PARAM_LEN]


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = ["Tracker", "default_tracking_uri", "KIND", "SWEEP", "CONFIG_HASH"]
