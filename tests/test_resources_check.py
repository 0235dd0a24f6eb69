"""One trial must fit on one node; queued work that cannot start says why (no Ray: plain dicts)."""

from __future__ import annotations

import pytest

from kdtune.sweep.resources_check import WaitWatch, fit_error, request_of


def node(cpu: float, gpu: float = 0, alive: bool = True, **custom) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpu, "GPU": gpu, "memory": 1e9, **custom}}


def test_request_uses_ray_names_and_drops_zeros():
    assert request_of({"cpu": 4, "gpu": 0}) == {"CPU": 4.0}
    assert request_of({"cpu": 1, "gpu": 0.5}) == {"CPU": 1.0, "GPU": 0.5}


def test_too_few_cpus_on_the_largest_node_names_the_key_the_ask_and_the_capacity():
    msg = fit_error({"CPU": 4}, [node(2)], "t2.yaml", "this machine")
    assert msg.startswith("t2.yaml: resources.cpu: 4 CPUs asked for")
    assert "the largest node has 2 (this machine, 1 node)" in msg and "--set resources.cpu=2" in msg
    assert "\n" not in msg


def test_a_fit_is_per_node_not_the_clusters_total():
    assert fit_error({"CPU": 4}, [node(2), node(2), node(2)], "s", "the Ray cluster") is not None
    assert fit_error({"CPU": 4}, [node(2), node(4)], "s", "the Ray cluster") is None


def test_dead_nodes_do_not_count():
    msg = fit_error({"CPU": 4}, [node(8, alive=False), node(2)], "s", "the Ray cluster")
    assert "largest node has 2 (the Ray cluster, 1 node)" in msg


def test_gpus_fractions_and_custom_resources():
    assert fit_error({"CPU": 1, "GPU": 0.5}, [node(4, gpu=1)], "s", "c") is None
    msg = fit_error({"CPU": 1, "GPU": 1}, [node(4)], "s", "this machine")
    assert "resources.gpu: 1 GPU asked" in msg and "set resources.gpu: 0" in msg
    msg = fit_error({"CPU": 1, "tpu_v5": 1}, [node(4)], "s", "c")
    assert "resources.tpu_v5: 1 tpu_v5 asked" in msg


def test_resources_that_fit_only_on_different_nodes():
    msg = fit_error({"CPU": 4, "GPU": 1}, [node(4), node(2, gpu=1)], "s", "c")
    assert "no single node has them together" in msg and "4 CPUs and 0 GPUs; 2 CPUs and 1 GPU" in msg


class Fake:
    """A clock the test moves and a probe that answers what the test sets."""

    def __init__(self, nodes, free):
        self.now, self.nodes, self.free, self.probes = 0.0, nodes, free, 0

    def clock(self):
        return self.now

    def probe(self):
        self.probes += 1
        return self.nodes, self.free


def watch(fake: Fake, said: list, request=None):
    return WaitWatch(request or {"CPU": 4}, said.append, fake.probe, grace_s=10, poll_s=5, clock=fake.clock)


def test_waiting_is_said_once_after_the_grace_period_when_the_cluster_lacks_free_resources():
    fake, said = Fake([node(4)], {"CPU": 2}), []
    w = watch(fake, said)
    for t in range(0, 30):
        fake.now = t
        w.update(waiting=3, running=0)
    assert said == ["  waiting for 4 CPUs; the cluster has 2 free"]
    fake.free = {"CPU": 1}  # another job took one more: the line changes, so it is said again
    fake.now = 40
    w.update(waiting=3, running=0)
    assert said[-1] == "  waiting for 4 CPUs; the cluster has 1 free"
    assert fake.probes <= 8  # polled every 5 s, not at every update


@pytest.mark.parametrize("waiting, running, free", [(3, 1, {"CPU": 0}), (0, 0, {"CPU": 0}), (3, 0, {"CPU": 4})])
def test_quiet_while_the_sweep_runs_something_has_nothing_queued_or_enough_is_free(waiting, running, free):
    fake, said = Fake([node(4)], free), []
    w = watch(fake, said)
    for t in range(0, 60):
        fake.now = t
        w.update(waiting=waiting, running=running)
    assert said == []


def test_a_request_no_alive_node_can_hold_is_said_at_once():
    fake, said = Fake([node(4, alive=False), node(2)], {"CPU": 2}), []
    w = watch(fake, said)
    w.update(waiting=1, running=0)
    assert len(said) == 1 and said[0].startswith("  no node can hold a trial now: 4 CPUs asked")
    assert "alive nodes have 2 CPUs" in said[0] and "waiting for a node that fits" in said[0]


def test_tunes_step_callback_counts_pending_and_running_trials():
    from types import SimpleNamespace

    from kdtune.sweep.tuner import ProgressLines

    fake, said = Fake([node(4)], {"CPU": 0}), []
    lines = ProgressLines(said.append, total=3, watch=watch(fake, said))
    trials = [SimpleNamespace(status=s) for s in ("PENDING", "PENDING", "TERMINATED")]
    for t in range(0, 20):
        fake.now = t
        lines.on_step_begin(t, trials)
    assert said == ["  waiting for 4 CPUs; the cluster has 0 free"]
    trials[0].status = "RUNNING"  # one of the sweep's own trials holds the CPUs: nothing to say
    lines.watch._last_line = None
    for t in range(20, 40):
        fake.now = t
        lines.on_step_begin(t, trials)
    assert len(said) == 1
