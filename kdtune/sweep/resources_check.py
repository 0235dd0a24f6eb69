"""Does one trial fit on one node, and why does queued work not start?

Ray keeps a task no node can hold pending forever (its "infeasible" warning goes to the driver
log, which kdtune hides), so kdtune checks the sweep's per-trial request itself: before any work
against the nodes (`fit_error`), and while it waits (`WaitWatch`). Everything here takes Ray's
answers as plain dicts (`ray.nodes()` entries, `ray.available_resources()`), so it is tested
without Ray; kdtune/sweep.py passes them in.
"""

from __future__ import annotations

import os
import time
from typing import Callable

RAY_NAMES = {"cpu": "CPU", "gpu": "GPU"}  # sweep file key -> Ray's resource name
GRACE_S = 10.0  # nothing of the sweep running this long while it has work queued: say why
POLL_S = 5.0  # how often the driver asks Ray for its nodes while work waits


def request_of(resources) -> dict[str, float]:
    """A sweep's `resources` (cpu, gpu, ...) as Ray resource names; zero amounts dropped."""
    fields = resources if isinstance(resources, dict) else vars(resources)
    return {RAY_NAMES.get(k, k): float(v) for k, v in fields.items() if v}


def local_node(count_gpus: bool) -> dict:
    """This machine as the single node a local Ray would start (`ray.init(num_cpus=os.cpu_count())`)."""
    gpus = 0
    if count_gpus:  # importing torch costs seconds: only when GPUs are asked for
        import torch

        gpus = torch.cuda.device_count()
    return {"Alive": True, "Resources": {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}}


def capacities(nodes: list[dict]) -> list[dict[str, float]]:
    """Each alive node's total resources."""
    return [dict(n.get("Resources") or {}) for n in nodes if n.get("Alive", n.get("alive", True))]


def fits(request: dict[str, float], capacity: dict[str, float]) -> bool:
    return all(capacity.get(k, 0.0) >= v for k, v in request.items())


def fit_error(request: dict[str, float], nodes: list[dict], where: str, source: str) -> str | None:
    """None if some single node can hold one trial; else the one-line problem and its fix.

    The cluster's total does not matter: one trial (or teacher task) runs on one node.
    """
    caps = capacities(nodes)
    if any(fits(request, c) for c in caps):
        return None
    on = f"({source}, {len(caps)} node{'s' if len(caps) != 1 else ''})"
    for name, asked in request.items():
        best = max((c.get(name, 0.0) for c in caps), default=0.0)
        if best < asked:
            key = sweep_key(name)
            fix = f"set {key}: {best:g} or less (--set {key}={best:g})" if best > 0 else \
                f"set {key}: 0, or add a node that has {plural(name, 1)}"
            return (f"{where}: {key}: {asked:g} {plural(name, asked)} asked for per trial and per teacher, "
                    f"but the largest node has {best:g} {on}; {fix}")
    # every resource fits on some node, but never all of them on the same one
    shapes = "; ".join(amounts({k: c.get(k, 0.0) for k in request}) for c in caps)
    return (f"{where}: resources: {amounts(request)} asked for per trial, but no single node has them "
            f"together {on}: {shapes}; lower one of {', '.join(sweep_key(k) for k in request)}")


def sweep_key(ray_name: str) -> str:
    back = {v: k for k, v in RAY_NAMES.items()}
    return f"resources.{back.get(ray_name, ray_name)}"


def plural(ray_name: str, n: float) -> str:
    return ray_name + ("s" if n != 1 and ray_name in ("CPU", "GPU") else "")


def amounts(resources: dict[str, float]) -> str:
    return " and ".join(f"{v:g} {plural(k, v)}" for k, v in resources.items())


class WaitWatch:
    """Says, once per change, why the sweep's queued work does not start.

    The driver calls `update(waiting, running)` from its wait loops (the teacher stage, Tune's
    step callback); every `poll_s` it asks `probe()` for (Ray's node list, the cluster's free
    resources). No alive node can hold the request: one line at once (a node may have left an
    autoscaling cluster; the sweep keeps waiting for one to join). Nothing of the sweep runs for
    `grace_s` and the cluster lacks free resources (other jobs hold them): "waiting for 4 CPUs;
    the cluster has 2 free".
    """

    def __init__(self, request: dict[str, float], say: Callable[[str], None],
                 probe: Callable[[], tuple[list[dict], dict[str, float]]],
                 grace_s: float | None = None, poll_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.request, self.say, self.probe, self.clock = request, say, probe, clock
        self.grace_s = GRACE_S if grace_s is None else grace_s
        self.poll_s = POLL_S if poll_s is None else poll_s
        self._idle_since: float | None = None
        self._last_poll = float("-inf")
        self._last_line: str | None = None

    def update(self, waiting: int, running: int) -> None:
        now = self.clock()
        if waiting == 0 or running > 0:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        if waiting == 0 or now - self._last_poll < self.poll_s:
            return
        self._last_poll = now
        nodes, free = self.probe()
        line = self.line(nodes, free, stalled=self._idle_since is not None and now - self._idle_since >= self.grace_s)
        if line and line != self._last_line:
            self.say(line)
        self._last_line = line

    def line(self, nodes: list[dict], free: dict[str, float], stalled: bool) -> str | None:
        caps = capacities(nodes)
        if not any(fits(self.request, c) for c in caps):
            largest = "; ".join(amounts({k: c.get(k, 0.0) for k in self.request}) for c in caps) or "no nodes"
            return (f"  no node can hold a trial now: {amounts(self.request)} asked, the cluster's alive nodes "
                    f"have {largest}; waiting for a node that fits to join (Ctrl-C stops, the same command resumes)")
        short = {k: free.get(k, 0.0) for k, v in self.request.items() if free.get(k, 0.0) < v}
        if not stalled or not short:
            return None
        have = f"{next(iter(short.values())):g}" if len(self.request) == 1 else amounts(short)
        return f"  waiting for {amounts(self.request)}; the cluster has {have} free"
