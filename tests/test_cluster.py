"""A sweep on a real two-node Ray cluster with a real MLflow tracking server, all on 127.0.0.1.

The nodes are `ray.cluster_utils.Cluster` nodes (separate raylets with their own resources); the
server is `mlflow server` with a sqlite backend and the artifact proxy, so clients never touch
the artifact folder themselves. Everything is torn down at the end of the module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from micro import micro_sweep

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination", str(root / "artifacts"),
           "--serve-artifacts", "--workers", "1"]
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).close()
            break
        except OSError:
            assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
            time.sleep(0.5)
    else:
        raise AssertionError("mlflow server did not start:\n" + (root / "server.log").read_text()[-2000:])
    yield {"url": url, "root": root}
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(kdtune_cache):
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    c.add_node(num_cpus=1, resources={"worker": 1})
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def test_sweep_on_two_nodes_logs_everything_to_the_server(tmp_path, cluster, mlflow_server):
    from mlflow.tracking import MlflowClient

    from kdtune.cli import main

    sweep = micro_sweep(tmp_path / "cluster.yaml", "cluster", "kdtune-cluster", {"lr": 5.0e-5},
                        grid={"init": ["teacher", "base", "scratch"], "kd": [False, True]}, max_concurrent=2)
    code = main(["sweep", str(sweep), "--address", cluster.address, "--tracking-uri", mlflow_server["url"],
                 "--storage", str(tmp_path / "store")])
    assert code == 0

    client = MlflowClient(mlflow_server["url"])
    exp = client.get_experiment_by_name("kdtune-cluster")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # served by the proxy
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("kdtune.kind") == "trial"]
    teachers = [r for r in runs if r.data.tags.get("kdtune.kind") == "teacher"]
    assert len(trials) == 6 and {r.info.status for r in trials} == {"FINISHED"}
    assert len(teachers) == 1  # trained once for the whole cluster
    assert len({r.data.tags["kdtune.node_id"] for r in trials}) == 2  # both nodes ran trials
    for r in trials:
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"copy_report.json", "per_language.csv"} <= names
    # the teacher travelled through the artifact proxy: it is on the server's disk, complete
    uploaded = {a.path for a in client.list_artifacts(teachers[0].info.run_id, "teacher")}
    assert {"teacher/config.json", "teacher/model.safetensors", "teacher/teacher.json"} <= uploaded
    assert list((mlflow_server["root"] / "artifacts").rglob("model.safetensors"))


def test_a_node_without_the_teacher_fetches_it_from_the_server(tmp_path, mlflow_server):
    from kdtune.training.teacher_store import is_complete
    from kdtune.tracking.runs import Tracker
    from kdtune.tracking.teachers import fetch_teacher

    tracker = Tracker.open(mlflow_server["url"], "kdtune-cluster")
    key = next(r.data.tags["kdtune.config_hash"] for r in tracker.find_runs("tags.`kdtune.kind` = 'teacher'"))
    dest = tmp_path / "elsewhere" / key
    dest.parent.mkdir()
    assert fetch_teacher(tracker, key, dest)
    assert is_complete(dest)
    assert not fetch_teacher(tracker, "0" * 16, tmp_path / "none")


def test_a_server_that_is_down_fails_fast_in_one_line(tmp_path, capsys):
    from kdtune.cli import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text("fixed: {dataset: synthetic, base_model: preset:micro}\n")
    started = time.time()
    assert main(["sweep", str(sweep), "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 2
    assert main(["sweep", str(sweep), "--address", f"127.0.0.1:{free_port()}"]) == 2
    assert time.time() - started < 30
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("kdtune: error: ") for line in lines)
