"""The driver lease: one live driver per sweep.

The sweep's parent run carries the host and pid of the driver running it and a heartbeat the
driver refreshes every `HEARTBEAT_S`. A second driver of the same sweep (a second terminal, a
resubmitted cluster job) refuses to start while that lease is live, instead of treating the live
driver's trials as orphans and training them again beside it.

A lease is dead, and is taken over, when the parent run is no longer RUNNING, when its heartbeat
is `STALE_AFTER` heartbeats old, or at once when its driver was on this host and its pid is gone
(a SIGKILLed driver): resuming after a crash never waits. The check and the write are two store
calls, so two drivers started within the same second can still both start.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from kdtune.errors import UsageError
from kdtune.tracking.tags import DRIVER_HEARTBEAT, DRIVER_HOST, DRIVER_PID

HEARTBEAT_S = 30.0
STALE_AFTER = 3  # heartbeats


@dataclass(frozen=True)
class Lease:
    host: str
    pid: int
    heartbeat: float  # seconds since the epoch

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "Lease | None":
        try:
            return cls(tags[DRIVER_HOST], int(tags[DRIVER_PID]), float(tags[DRIVER_HEARTBEAT]))
        except (KeyError, ValueError):  # never leased (a store older than the lease), or released
            return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# keyword-only facts about this host and the time, so tests can pose any of them
def live_holder(status: str, tags: dict[str, str], *, now: float, host: str, pid: int,
                alive=pid_alive, every_s: float = HEARTBEAT_S) -> Lease | None:
    """The driver holding a live lease on a parent run (its status and tags), else None."""
    lease = Lease.from_tags(tags)
    if status != "RUNNING" or lease is None:
        return None
    if now - lease.heartbeat > STALE_AFTER * every_s:
        return None
    if lease.host == host and (lease.pid == pid or not alive(lease.pid)):
        return None  # this host's driver is gone (the same pid is this process: a reused pid)
    return lease


def refuse_if_held(run, name: str, every_s: float = HEARTBEAT_S) -> None:
    """UsageError naming the live driver of sweep `name`'s parent run (an MLflow Run), if any."""
    now = time.time()
    holder = live_holder(run.info.status, run.data.tags, now=now, host=socket.gethostname(), pid=os.getpid(),
                         every_s=every_s)
    if holder is None:
        return
    raise UsageError(
        f"sweep {name} is already running: driver pid {holder.pid} on host {holder.host} "
        f"(parent run {run.info.run_id}, heartbeat {now - holder.heartbeat:.0f} s ago); to take over, "
        f"stop that driver (kill {holder.pid} on {holder.host}) and run this command again, or wait "
        f"until its lease lapses ({STALE_AFTER * every_s:.0f} s without a heartbeat)"
    )


class DriverLease:
    """Hold the lease on parent run `run_id` while the `with` block runs: heartbeat, then release."""

    def __init__(self, tracker, run_id: str, every_s: float = HEARTBEAT_S):
        self.tracker, self.run_id, self.every_s = tracker, run_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="kdtune-lease", daemon=True)

    def _write(self) -> None:
        self.tracker.set_tags(self.run_id, {DRIVER_HOST: socket.gethostname(), DRIVER_PID: os.getpid(),
                                            DRIVER_HEARTBEAT: f"{time.time():.1f}"})

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._write()
            except Exception:  # noqa: BLE001 - a busy store: the next beat tries again
                pass

    def __enter__(self) -> "DriverLease":
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.tracker.delete_tags(self.run_id, [DRIVER_HOST, DRIVER_PID, DRIVER_HEARTBEAT])
        except Exception:  # noqa: BLE001 - the run's status (no longer RUNNING) releases it too
            pass
