"""What the Ray end-to-end tests share: the micro sweep, one local Ray per module, trial queries.

The micro sweep is synthetic data, the micro preset and a 20-step teacher, so a trial takes
seconds on 2 cores. Each test adds its own grid, search or scheduler and sets the few fields its
behaviour depends on; a grid or space value replaces the fixed one, as in any sweep file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager, suppress
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


def kill_tree(root: int, timeout_s: float = 60.0) -> None:
    """SIGKILL a process and everything under it (listed before the kill: orphans are reparented),
    and wait until they are gone. Ray's workers are the raylet's children: one left alive after
    its driver would go on writing to the store."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    for pid in tree:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with suppress(ProcessLookupError, PermissionError):  # and its process group, when it leads one
        os.killpg(root, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(map(running, tree)):
        time.sleep(0.2)


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed process stays one until its parent, or init, reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
