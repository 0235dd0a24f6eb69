"""How a sweep run ended: its trials' final states read back from MLflow, and the summary table."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from kdtune.config import SweepSpec
from kdtune.metrics import BEST_VAL, HELDOUT, MAJORITY_HELDOUT, TEACHER_HELDOUT, metric_name
from kdtune.sweep.lifecycle import settle
from kdtune.tracking.tags import CONFIG_HASH, EARLY_STOPPED, INTERRUPTED, STOPPED, STOPPED_BY_RAY, SUPERSEDED


@dataclass
class SweepOutcome:
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    skipped: list[str] = field(default_factory=list)  # config hashes already FINISHED
    ran: list[str] = field(default_factory=list)
    finished: int = 0
    failed: int = 0
    early_stopped: int = 0
    interrupted: int = 0  # trials a Ctrl-C (SIGINT) stopped: the next run of the sweep resumes them

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.interrupted == 0


def settle_runs(  # the driver's knowledge at the end of a run; the last three are keywords with defaults
    tracker, parent: str, wanted: set[str], outcome: SweepOutcome, early_stop: bool, since_ms: int = 0,
    unsuggested: int = 0, grace_s: float = 10.0,
) -> None:
    """Count how this run's trials ended; runs Ray stopped are KILLED with the reason, none left RUNNING.

    `wanted`: the config hashes this run set out to run; `unsuggested`: trials a search still owed
    when Ray Tune returned (a sign of an interrupt, as a wanted trial that never started).
    Ray Tune catches Ctrl-C (SIGINT) itself and returns from `fit` as if done, and a trial sees the
    same stop as an early stop, so an interrupt is recognised here: a trial that never started, or
    (without a scheduler, the only other thing that stops trials) one Ray stopped.
    With a scheduler, an interrupted running trial cannot be told from an early-stopped one.
    Ray Tune can return while a stopped trial's thread is still writing its run's end: with a
    scheduler, wait up to `grace_s` for RUNNING runs to end, so the verdict is written last. This
    is a poll on purpose: the trial threads live in Ray's worker processes, possibly on other nodes,
    and the MLflow store is the only thing the driver and they share (no event can cross).
    """
    def fetch() -> list:
        return [r for r in tracker.trial_runs(parent) if r.data.tags.get(CONFIG_HASH) in wanted]

    runs = fetch()
    deadline = time.monotonic() + (grace_s if early_stop else 0.0)
    while any(r.info.status == "RUNNING" for r in runs) and time.monotonic() < deadline:
        time.sleep(0.5)
        runs = fetch()
    never_started = len(wanted - {r.data.tags.get(CONFIG_HASH) for r in runs}) + unsuggested
    stopped = [r for r in runs if r.info.status == "RUNNING" or (
        r.info.status == "KILLED" and r.info.start_time >= since_ms
        and r.data.tags.get(STOPPED, "").startswith(STOPPED_BY_RAY))]
    interrupted = bool(never_started) or (bool(stopped) and not early_stop)
    for run in stopped:
        if interrupted:
            # Its own tag: the trial's process may still be writing `kdtune.stopped` as it exits.
            tags = {INTERRUPTED: "the next run of the sweep resumes it from its checkpoint"}
        else:
            tags = {STOPPED: EARLY_STOPPED if early_stop else STOPPED_BY_RAY}
        settle(tracker, run, tags)
    if interrupted:
        outcome.interrupted = len(stopped) + never_started
    else:
        outcome.early_stopped = len(stopped)
    outcome.finished = sum(r.info.status == "FINISHED" for r in runs)
    outcome.failed = sum(r.info.status == "FAILED" for r in runs)


def print_summary(tracker, parent: str, spec: SweepSpec, say: Callable) -> None:
    """Each trial's scores beside its teacher's and the majority class's on its test rows (the
    paper's random row) in the sweep's metric; what the seeds can support; where to browse."""
    runs = sorted((r for r in tracker.trial_runs(parent) if not r.data.tags.get(SUPERSEDED)),
                  key=lambda r: r.info.run_name or "")
    metric = spec.metric
    w = min(110, max([58] + [len(r.info.run_name or "") for r in runs]))  # a search's names carry its values
    keys = [metric_name(stem, metric) for stem in (BEST_VAL, HELDOUT, TEACHER_HELDOUT, MAJORITY_HELDOUT)]
    say(f"\n{'run':{w}s} {'status':9s} {'val ' + metric:>12s} {'test ' + metric:>13s} {'teacher':>8s} {'majority':>8s}")
    for r in runs:
        m = r.data.metrics
        val, test, teacher, chance = (f"{m[k]:.4f}" if k in m else "-" for k in keys)
        say(f"{(r.info.run_name or '')[:w]:{w}s} {r.info.status:9s} {val:>12s} {test:>13s} {teacher:>8s} {chance:>8s}")
    say("teacher: its score on the same test rows; majority: every test row answered with the most frequent class "
        "(chance, the paper's random row; in macro-F1 uniform guessing, 1/classes, can score higher).")
    seeds = _seeds_per_setting(runs)
    if seeds and max(seeds) < 3:
        say(f"{max(seeds)} seed(s) per setting: too few to order the settings (kdtune report judges the paper's "
            "findings from 3 seeds a side).")
    elif seeds:
        say(f"The paper's findings, judged: kdtune report --experiment {spec.experiment} (its Claims section).")
    runs_page = f"#/experiments/{tracker.experiment_id}/runs"  # the bare experiment page may open on GenAI traces
    if tracker.uri.startswith(("http://", "https://")):
        say(f"Browse the runs: {tracker.uri.rstrip('/')}/{runs_page}")
    else:
        say(f"Browse the runs: mlflow ui --backend-store-uri {tracker.uri}  then  http://127.0.0.1:5000/{runs_page}")


def _seeds_per_setting(runs) -> list[int]:
    """How many FINISHED seeds each setting (the run's params without its seed) has."""
    counts = Counter(tuple(sorted((k, v) for k, v in r.data.params.items() if k != "seed"))
                     for r in runs if r.info.status == "FINISHED")
    return list(counts.values())
