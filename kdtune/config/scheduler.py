"""The sweep file's `scheduler:`: which of Ray Tune's early-stopping rules, with which options.

`scheduler:` stops hopeless trials early, comparing the validation `metric` at each evaluation
(time is counted in evaluations, so a resumed trial continues its count):
- `{type: asha, grace_period: 1, reduction_factor: 3, max_t: 100}`: Ray's ASHAScheduler;
- `{type: hyperband, reduction_factor: 3, max_t: 100}`: Ray's HyperBandScheduler (pauses trials
  and resumes them from their checkpoints; a trial that survives the brackets runs its schedule
  out). It needs every trial created up front: a grid or random search with `max_concurrent: 0`;
- `{type: median, grace_period: 1, min_samples_required: 3, hard_stop: true}`: Ray's
  MedianStoppingRule (stops a trial whose best is below the median of the others' running means).
Values shown are the defaults; a stopped trial's run ends KILLED with a `kdtune.stopped` tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtune.config.checks import check_keys
from kdtune.errors import UsageError

SCHEDULER_KEYS = {"type": str, "grace_period": int, "reduction_factor": (int, float), "max_t": int,
                  "min_samples_required": int, "hard_stop": bool}
SCHEDULER_OPTIONS = {  # Ray's ASHAScheduler, HyperBandScheduler, MedianStoppingRule
    "asha": ("grace_period", "reduction_factor", "max_t"),
    "hyperband": ("reduction_factor", "max_t"),
    "median": ("grace_period", "min_samples_required", "hard_stop"),
}


@dataclass
class Scheduler:
    type: str = "asha"
    grace_period: int = 1  # in evaluations
    reduction_factor: float = 3
    max_t: int = 100
    min_samples_required: int = 3
    hard_stop: bool = True

    def options(self) -> dict:
        """The options of this type (SCHEDULER_OPTIONS), as Ray's scheduler takes them."""
        return {k: getattr(self, k) for k in SCHEDULER_OPTIONS[self.type]}


def parse_scheduler(sched: dict | None, path: str) -> Scheduler | None:
    if not sched:
        return None
    check_keys(sched, SCHEDULER_KEYS, path, "scheduler.")
    kind = sched.get("type", "asha")
    if kind not in SCHEDULER_OPTIONS:
        raise UsageError(f"{path}: scheduler.type: {kind!r} not supported; allowed: {', '.join(SCHEDULER_OPTIONS)}")
    for key in sched:
        if key != "type" and key not in SCHEDULER_OPTIONS[kind]:
            raise UsageError(f"{path}: scheduler.{key}: not an option of {kind}; allowed: "
                             f"{', '.join(SCHEDULER_OPTIONS[kind])}")
    scheduler = Scheduler(**sched)
    for key, low in (("grace_period", 1), ("max_t", 1), ("min_samples_required", 1)):
        if getattr(scheduler, key) < low:
            raise UsageError(f"{path}: scheduler.{key}: must be >= {low}, got {getattr(scheduler, key)}")
    if scheduler.reduction_factor <= 1:
        raise UsageError(f"{path}: scheduler.reduction_factor: must be > 1, got {scheduler.reduction_factor}")
    if kind == "asha" and scheduler.max_t < scheduler.grace_period:
        raise UsageError(f"{path}: scheduler.max_t: must be >= grace_period ({scheduler.grace_period})")
    return scheduler
