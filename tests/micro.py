"""What the Ray end-to-end tests share: the micro sweep, one local Ray per module, trial queries.

The micro sweep is synthetic data, the micro preset and a 20-step teacher, so a trial takes
seconds on 2 cores. Each test adds its own grid, search or scheduler and sets the few fields its
behaviour depends on; a grid or space value replaces the fixed one, as in any sweep file.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

MICRO_FIXED = {
    "dataset": "synthetic",
    "base_model": "preset:micro",
    "init": "teacher",
    "kd": False,
    "epochs": 1,
    "batch_size": 64,
    "lr": 1.0e-3,
    "eval_steps": 10,
    "log_steps": 5,
    "max_length": 32,
    "teacher_max_steps": 20,
    "teacher_batch_size": 64,
    "teacher_eval_steps": 20,
}


def micro_sweep(path: Path, name: str, experiment: str, fixed: dict | None = None, **sections) -> Path:
    """Write the micro sweep to `path`: `fixed` updates MICRO_FIXED; `sections` are the file's
    other top-level keys (grid, space, search, scheduler, overrides, max_concurrent, ...)."""
    doc = {"name": name, "tracking": {"experiment": experiment}, "fixed": {**MICRO_FIXED, **(fixed or {})},
           "resources": {"cpu": 1}, **sections}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextmanager
def local_ray():
    """A 2-CPU local Ray for one test module (`address="local"`: never another Ray on the machine)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=128 * 1024**2, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def trial_runs(uri: str, experiment: str) -> list:
    """Every trial run of the experiment (none before the sweep has created it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.`kdtune.kind` = 'trial'", max_results=1000)


def in_flight_checkpoints(store: Path, uri: str, experiment: str) -> dict[str, int]:
    """config hash -> checkpoint step, of trials whose run is RUNNING and has saved a checkpoint."""
    running = {r.data.tags["kdtune.config_hash"] for r in trial_runs(uri, experiment) if r.info.status == "RUNNING"}
    steps = {}
    for meta in (store / "checkpoints").glob("*/meta.json"):
        try:
            steps[meta.parent.name] = json.loads(meta.read_text())["step"]
        except (OSError, ValueError):  # replaced while read: the next poll sees it
            continue
    return {h: step for h, step in steps.items() if h in running and step > 0}


def wait_until_settled(folder: Path, quiet_s: float = 2.0, timeout_s: float = 120.0) -> None:
    """Wait until no file under `folder` has changed for `quiet_s` seconds. After a driver is
    SIGKILLed, its Ray workers outlive it for a moment and may still write (an MLflow metric, a
    checkpoint's temporary file): what a user who moves the folder afterwards would not race."""
    def snapshot():
        files = {}
        for p in folder.rglob("*"):
            try:
                st = p.stat()
            except OSError:  # vanished while listed: still changing
                return None
            files[str(p)] = (st.st_size, st.st_mtime_ns)
        return files

    deadline, last, quiet_since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        now = snapshot()
        if now is None or now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.5)
    raise AssertionError(f"{folder} still changing after {timeout_s:.0f} s")
