"""Resources against a real Ray cluster: a node too small fails before any work, and a sweep whose
work waits on resources says so instead of waiting silently.

One small `ray.cluster_utils.Cluster` (a 1-CPU head) for the module; a second node is added and
removed where a test needs it.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from micro import micro_sweep

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def cluster(kdtune_cache):  # noqa: ARG001 - KDTUNE_CACHE must be set before the nodes start
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 128 * 1024**2})
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def write_sweep(tmp_path: Path, name: str, cpu: float) -> Path:
    return micro_sweep(tmp_path / f"{name}.yaml", name, "kdtune-resources",
                       {"lr": 5.0e-5, "log_steps": 50, "teacher_max_steps": 10, "teacher_eval_steps": 10},
                       resources={"cpu": cpu})


def test_a_trial_bigger_than_every_node_exits_2_in_one_line_before_any_work(tmp_path, cluster, capsys):
    from kdtune.cli import main

    sweep = write_sweep(tmp_path, "too-big", cpu=2)
    started = time.time()
    assert main(["sweep", str(sweep), "--tracking-uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db",
                 "--storage", str(tmp_path / "mlruns")]) == 2
    assert time.time() - started < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{sweep}: resources.cpu: 2 CPUs asked for per trial and per teacher" in err[0]
    assert "the largest node has 1 (the Ray cluster, 1 node)" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["too-big.yaml"]  # no store, no MLflow run


def test_the_driver_says_what_queued_work_waits_for_then_runs_it(tmp_path, cluster, monkeypatch):
    import ray

    import kdtune.sweep.resources_check as resources_check
    from kdtune.config import load_sweep
    from kdtune.models.preset import build_preset
    from kdtune.sweep import run_sweep
    from kdtune.sweep.teachers import ProgressBoard

    monkeypatch.setattr(resources_check, "GRACE_S", 1.0)
    monkeypatch.setattr(resources_check, "POLL_S", 0.5)
    build_preset("micro", "synthetic")  # now, so the teacher is queued while the CPU is still held
    # another job holds the only CPU (any actor of the package: workers import it by reference)
    holder = ray.remote(num_cpus=1)(ProgressBoard).remote()
    ray.get(holder.lines.remote())

    class Tap(io.StringIO):
        """The sweep's output; the first waiting line releases the CPU."""

        def write(self, text: str) -> int:
            if "waiting for" in text:
                ray.kill(holder)
            return super().write(text)

    out = Tap()
    outcome = run_sweep(load_sweep(write_sweep(tmp_path, "waits", cpu=1)), out=out,
                        tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db", storage=str(tmp_path / "mlruns"))
    lines = out.getvalue().splitlines()
    assert "  waiting for 1 CPU; the cluster has 0 free" in lines, lines
    assert outcome.ok and outcome.finished == 1


def test_a_node_leaving_makes_the_request_infeasible_and_the_watch_says_so(cluster):
    import ray

    from kdtune.sweep.resources_check import WaitWatch

    said: list[str] = []
    watch = WaitWatch({"CPU": 2}, said.append, lambda: (ray.nodes(), ray.available_resources()), poll_s=0)
    big = cluster.add_node(num_cpus=2, object_store_memory=128 * 1024**2)
    cluster.wait_for_nodes()
    watch.update(waiting=1, running=0)
    assert said == []  # the 2-CPU node can hold it
    cluster.remove_node(big)
    deadline = time.time() + 60
    while not said and time.time() < deadline:
        watch.update(waiting=1, running=0)
        time.sleep(0.5)
    assert said and said[0].startswith("  no node can hold a trial now: 2 CPUs asked, the cluster's alive "
                                       "nodes have 1 CPU;"), said
