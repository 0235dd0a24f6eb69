"""A trial's MLflow run from start to end: the only code that sets a trial run's status.

A small state machine. The trial's own thread (`kdtune.sweep.trainable`) holds a `TrialLifecycle`
and moves it once, from RUNNING to

- FINISHED: trained, evaluated and logged;
- FAILED: an error (tagged `kdtune.failure`, the traceback as error.txt);
- KILLED, stopped: Ray stopped it (a scheduler's early stop, or the end of an interrupted sweep);
  a verdict the driver already wrote is kept.

The driver (`kdtune.sweep.run`, `kdtune.sweep.outcome`) writes the verdict on trials Ray stopped
(`settle`: early stopped or interrupted) and ends runs a new plan leaves behind (`kill`: orphans,
runs `--force` supersedes), each through this module.
"""

from __future__ import annotations

from collections.abc import Callable

from kdtune.metrics import reported_metric
from kdtune.tracking.tags import FAILURE, STOPPED, STOPPED_BY_RAY

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"
DIVERGED = "diverged"  # the result key of a trial a non-finite loss ended
EVALS = "evals"  # the result key the schedulers count time in: evaluations so far


class TrialLifecycle:
    """One trial run, seen from the trial's thread: RUNNING, then FINISHED, FAILED or KILLED once;
    and its reports to Ray Tune (`report`: `ray.tune.report` in a trial), each with the same keys.

    Only the trial's own metric goes to Ray, under `reported_metric`: a scheduler set to another
    name then fails loudly (Ray's strict metric check) instead of comparing the wrong F1."""

    def __init__(self, tracker, run_id: str, metric: str = "", report: Callable[[dict], None] = lambda r: None):
        self.tracker, self.run_id, self.state = tracker, run_id, RUNNING
        self.metric, self.report = metric, report
        self.evals = 0  # evaluations so far, counted on across a resume: the time the schedulers count in

    def evaluated(self, step: int, score: float, best: float, evals: int, node: str) -> None:
        self.evals = evals
        self.report({reported_metric(self.metric): score, "metric": self.metric, "best_val": best, "step": step,
                     "node": node, EVALS: evals})

    def report_final(self, best: float, test: float, steps: int) -> None:
        """After `finish`: the best validation score is the trial's last word to the schedulers."""
        self.report({reported_metric(self.metric): best, "metric": self.metric, "best_val": best, "test": test,
                     "step": steps, EVALS: self.evals})

    def diverged(self, reason: str, trace: str) -> None:
        """A non-finite loss: retrying with the same seed diverges again, so the run FAILED, and the
        sweep goes on. Ray Tune refuses (and fails the whole sweep) a trial that ends without ever
        reporting its metric, as one that diverges before its first evaluation would: it scores 0."""
        self.fail(reason, trace)
        self.report({reported_metric(self.metric): 0.0, DIVERGED: 1, EVALS: self.evals})

    @property
    def ended(self) -> bool:
        return self.state != RUNNING

    def _end(self, status: str) -> None:
        if self.ended:
            raise RuntimeError(f"trial run {self.run_id} already ended {self.state}; cannot end it {status}")
        self.tracker.end_run(self.run_id, status)
        self.state = status

    def finish(self) -> None:
        self._end(FINISHED)

    def fail(self, reason: str, trace: str) -> None:
        self.tracker.set_tags(self.run_id, {FAILURE: reason})
        self.tracker.log_text(self.run_id, trace, "error.txt")
        self._end(FAILED)

    def stopped(self) -> None:
        """Ray stopped the trial. The driver says why (early stop or interrupt); on a loaded machine
        it may have said so before this thread got here, and its verdict is the one to keep."""
        if STOPPED not in self.tracker.tags(self.run_id):
            self.tracker.set_tags(self.run_id, {STOPPED: STOPPED_BY_RAY})
        self._end(KILLED)


def settle(tracker, run, tags: dict[str, str]) -> None:
    """The driver's verdict on a trial Ray stopped (`run`: its MLflow run); a run still RUNNING
    (its thread never got to end it) is ended KILLED."""
    tracker.set_tags(run.info.run_id, tags)
    if run.info.status == RUNNING:
        tracker.end_run(run.info.run_id, KILLED)


def kill(tracker, runs: dict[str, dict[str, str]]) -> None:
    """End each run a plan leaves behind (run id -> tags: an orphan, a run --force supersedes) KILLED."""
    for run_id, tags in runs.items():
        tracker.set_tags(run_id, tags)
        tracker.end_run(run_id, KILLED)
