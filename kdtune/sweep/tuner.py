"""The trial stage: start (or join) Ray, run the remaining trials with Ray Tune, one line per event.

The trials are a grid (a grid sweep, or a random search's pre-drawn trials) or come from a
searcher (`kdtune.sweep.search`, Optuna). Resources per trial, `max_concurrent`, an optional
early-stopping scheduler on the validation metric (ASHA, HyperBand or the median rule, counting
time in evaluations) and `max_failures` retries come from the sweep file. How each trial ended is
read back from MLflow afterwards (`kdtune.sweep.outcome`), not from Ray's results; the parent
run's best trial and summary are updated as trials end (`kdtune.sweep.best`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ray.tune import Callback

from kdtune.config import Scheduler, SweepSpec, TrialConfig, make_trial, search_name
from kdtune.errors import UsageError
from kdtune.metrics import reported_metric
from kdtune.sweep.lifecycle import DIVERGED, EVALS
from kdtune.sweep.trainable import run_trial


# what Ray Tune's `fit` installs handlers for (ray/tune/tune.py, _setup_signal_catching)
TUNE_SIGNALS = (signal.SIGINT, *([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else []))


def init_ray(address: str | None, store: Path) -> None:
    import ray

    if ray.is_initialized():
        return
    # ray.init installs Ray's own SIGTERM handler (it logs a stack and exits), replacing the one
    # the sweep command set (stop cleanly, like Ctrl-C): put the caller's back afterwards.
    with signal_handlers_restored(signal.SIGTERM):
        _init(address)


def _init(address: str | None) -> None:
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"--address {address}: could not connect to the Ray cluster ({first})") from None
    else:
        # "local": a Ray of its own, even where another one runs on this machine (a bare init
        # would join the latest one started, and refuse num_cpus there)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 1024**2, configure_logging=False)


def make_scheduler(s: Scheduler | None):
    """Ray's scheduler for the sweep's `scheduler:` (metric and mode come from the TuneConfig)."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule

    if s is None:
        return None
    kinds = {"asha": ASHAScheduler, "hyperband": HyperBandScheduler, "median": MedianStoppingRule}
    extra = {}
    if s.type == "median":  # never yield a trial for lack of samples: a paused trial restarts its process
        extra["min_time_slice"] = float("inf")
    if s.type == "hyperband":  # max_t shapes the brackets; a trial that survives them runs its schedule out
        extra["stop_last_trials"] = False
    return kinds[s.type](time_attr=EVALS, **s.options(), **extra)


# what _run holds for the tuner (the spec, the trials or a searcher and its sample count, the store)
def run_tuner(spec: SweepSpec, todo: list[TrialConfig], tracker, parent: str, store: Path, say: Callable,
              searcher=None, samples: int = 0):
    """Run `todo` as a grid, or, with `searcher` (a Ray Searcher), `samples` trials it suggests."""
    from ray import tune

    ctx = {"uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent": parent,
           "store": str(store), "cpus": spec.resources.cpu, "sweep": spec.name,
           "space": spec.search.space_yaml() if spec.search else None}
    if searcher is None:
        param_space = {"trial": tune.grid_search([t.to_dict() for t in todo]), "ctx": ctx}
        total = len(todo)
    else:
        param_space, total = {"ctx": ctx}, samples
    trainable = tune.with_resources(run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=reported_metric(spec.metric), mode="max", scheduler=make_scheduler(spec.scheduler), reuse_actors=True,
            search_alg=searcher, num_samples=samples if searcher is not None else 1,
            max_concurrent_trials=spec.max_concurrent or None,
            trial_name_creator=lambda tr: trial_label(tr.config),
            trial_dirname_creator=lambda tr: trial_label(tr.config).replace("/", "_"),
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(store / "ray"),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[ProgressLines(say, total, wait_watch(spec, say)), BestOnParent(tracker, parent, spec)],
            verbose=0,
        ),
    )
    # Tune installs SIGINT and SIGUSR1 handlers for `fit` and leaves them behind when no stop came:
    # in a long-lived process (a notebook, a script running sweeps one after another) a later
    # Ctrl-C or SIGTERM would reach that stale handler, which only flags a finished run.
    with signal_handlers_restored(*TUNE_SIGNALS):
        return tuner.fit()


@contextmanager
def signal_handlers_restored(*signums: int):
    """Put back the caller's handlers for `signums` when the block ends (Ray replaces some)."""
    saved = {}
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        saved = {n: signal.getsignal(n) for n in signums}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)


class BestOnParent(Callback):
    """The parent run's best trial and summary, updated whenever a trial ends (`kdtune.sweep.best`)."""

    def __init__(self, tracker, parent: str, spec: SweepSpec):
        self.tracker, self.parent, self.spec = tracker, parent, spec

    def _update(self) -> None:
        from kdtune.sweep.best import update_parent

        try:
            update_parent(self.tracker, self.parent, self.spec)
        except Exception:  # noqa: BLE001 - a busy store: the next trial's end (or the sweep's) writes it
            pass

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._update()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._update()


def wait_watch(spec: SweepSpec, say: Callable):
    """Tells why queued teachers/trials do not start (see kdtune/sweep/resources_check.py)."""
    import ray

    from kdtune.sweep.resources_check import WaitWatch, request_of

    return WaitWatch(request_of(spec.resources), say, lambda: (ray.nodes(), ray.available_resources()))


def trial_label(config: dict) -> str:
    return search_name(make_trial(config["trial"]), list(config.get("ctx", {}).get("space") or []))


class ProgressLines(Callback):
    """One short line per trial event: started, evaluated, finished, failed."""

    def __init__(self, say: Callable[[str], None], total: int, watch=None):
        self.say, self.total, self.done, self.t0 = say, total, 0, time.time()
        self.placed: set[str] = set()
        self.watch = watch  # a resources_check.WaitWatch: says why pending trials do not start

    def on_step_begin(self, iteration, trials, **info):
        if self.watch is not None:
            status = [t.status for t in trials]
            self.watch.update(waiting=status.count("PENDING"), running=status.count("RUNNING"))

    def _prefix(self) -> str:
        return f"[{time.time() - self.t0:7.1f}s {self.done}/{self.total}]"

    def on_trial_start(self, iteration, trials, trial, **info):
        self.say(f"{self._prefix()} start  {trial.trial_id} {trial_label(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        metric = result.get("metric")
        if not metric:
            return
        if result.get(DIVERGED):
            self.say(f"{self._prefix()} FAILED {trial_label(trial.config)} (non-finite loss; see the run's error.txt)")
            return
        if trial.trial_id not in self.placed and result.get("node"):
            self.placed.add(trial.trial_id)
            self.say(f"{self._prefix()} node   {trial_label(trial.config)} runs on {result['node']}")
        extra = f" test {result['test']:.4f}" if "test" in result else ""
        self.say(f"{self._prefix()} eval   {trial_label(trial.config)} step {result.get('step', '?')} "
                 f"val {metric} {result[reported_metric(metric)]:.4f} best {result.get('best_val', float('nan')):.4f}{extra}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self.say(f"{self._prefix()} done   {trial_label(trial.config)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self.say(f"{self._prefix()} FAILED {trial_label(trial.config)} (see the run's error.txt in MLflow)")
