"""The sweep runner: the only module that starts Ray.

    spec = load_sweep("sweeps/table2.yaml")
    run_sweep(spec)

1. Check everything that can be checked before work starts (tracking store, storage, data,
   partitions, resources): bad input raises UsageError and nothing is written.
2. Attach to the sweep's MLflow parent run (create it the first time). Child runs are matched to
   grid points by config hash: FINISHED ones are skipped, RUNNING ones left by a killed driver
   are marked KILLED and resumed from their checkpoint, FAILED ones rerun with --rerun-failed,
   everything with --force.
3. Fine-tune the teachers the remaining grid needs (once each, in parallel as Ray tasks).
4. Run the remaining trials with a Ray Tune grid (resources per trial, max_concurrent, optional
   ASHA early stopping, retries), printing a line per event and a summary table at the end.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from kdtune.config import SweepSpec, TrialConfig
from kdtune.errors import UsageError

for _k, _v in {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AIR_NEW_OUTPUT": "0",
               "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false",
               "RAY_DEDUP_LOGS": "0",
               # kdtune's checkpoints are tiny pointers (see trainable.py): Ray's sync warning is noise
               "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}.items():
    os.environ.setdefault(_k, _v)


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


def describe(spec: SweepSpec, out: TextIO | None = None) -> None:
    """The expanded grid, as `--dry-run` prints it."""
    out = out or sys.stdout
    print(f"sweep {spec.name}: {len(spec.trials)} trials, {len(spec.teacher_trials)} teacher(s)", file=out)
    if spec.description:
        print(f"  {spec.description.strip()}", file=out)
    for i, t in enumerate(spec.trials, 1):
        print(f"  {i:4d}  {t.config_hash}  {t.run_name}", file=out)
    for key, t in spec.teacher_trials.items():
        print(f"  teacher {key}: {t.dataset} {t.base_model} on {t.resolved_teacher_partition}, "
              f"{t.teacher_epochs:g} epochs, seeds {list(t.teacher_seeds)}", file=out)


def preflight(spec: SweepSpec, tracking_uri: str, store: Path, address: str | None) -> None:
    """Every check that needs no training; raises UsageError naming the key or file."""
    from kdtune import data
    from kdtune.data.sources import expand
    from kdtune.tracking.runs import check_reachable

    where = spec.path
    if not writable(store):
        raise UsageError(f"{where}: storage: {store} is not writable")
    check_ray_address(address or os.environ.get("RAY_ADDRESS"))
    check_cluster_fits(spec, address, store)  # early: locally it needs no heavy imports
    for t in spec.trials:
        if t.data_dir is not None and not Path(expand(t.data_dir)).is_dir():
            raise UsageError(f"{where}: data_dir: {t.data_dir} is not a folder")
        for key in ("languages", "train_partition", "eval_partition", "teacher_partition"):
            value = getattr(t, key)
            if value is None:
                continue
            try:
                data.languages(t.dataset, value, None if key == "languages" else t.languages)
            except UsageError as exc:
                raise UsageError(f"{where}: {key}: {exc}") from None
    for t in {(t.base_model, t.layers, t.hidden, t.head_mode, t.layer_map): t for t in spec.trials}.values():
        check_student_shape(t, where)
    check_reachable(tracking_uri)  # a network round trip for a server
    fetch_hub_models(spec, where)  # last: may download a model (once, into the Hugging Face cache)


def check_cluster_fits(spec: SweepSpec, address: str | None, store: Path) -> None:
    """One trial's resources must fit on a single node: the Ray cluster's, else this machine's counts."""
    from kdtune.resources_check import fit_error, local_node, request_of

    if address or os.environ.get("RAY_ADDRESS") or ("ray" in sys.modules and sys.modules["ray"].is_initialized()):
        import ray

        _init_ray(address, store)  # connecting starts nothing; the ray.nodes() it gives are what Ray schedules on
        nodes, source = ray.nodes(), "the Ray cluster"
    else:  # the local Ray starts later with this machine's CPUs and GPUs
        nodes, source = [local_node(count_gpus=spec.resources.gpu > 0)], "this machine"
    problem = fit_error(request_of(spec.resources), nodes, spec.path, source)
    if problem:
        raise UsageError(problem)


def fetch_hub_models(spec: SweepSpec, where: str) -> None:
    """Hub base models into the Hugging Face cache now, in the driver; then their shapes are checked too."""
    from kdtune.models.resolve import fetch_base_model, is_hub_name

    fetched = set()
    for name in sorted({t.base_model for t in spec.trials if is_hub_name(t.base_model)}):
        fetch_base_model(name, where)
        fetched.add(name)
    for t in {(t.base_model, t.layers, t.hidden, t.head_mode, t.layer_map): t for t in spec.trials
              if t.base_model in fetched}.values():
        check_student_shape(t, where)


def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """A host:port (or ray://host:port) address must accept a TCP connection; fail fast if not."""
    import socket

    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def check_student_shape(t: TrialConfig, where: str) -> None:
    """layers/hidden/layer_map against the teacher's shape, when it is known without downloading."""
    from kdtune.models.layer_map import resolve_layer_map
    from kdtune.models.student import student_config

    config = base_config(t.base_model)
    if config is None:  # a hub model not in the local cache: checked when the teacher is built
        return
    try:
        s_cfg = student_config(config, t.layers, t.hidden, t.head_mode)
        layer_map = list(t.layer_map) if isinstance(t.layer_map, tuple) else t.layer_map
        resolve_layer_map(layer_map, config.num_hidden_layers, s_cfg.num_hidden_layers)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc} (base_model {t.base_model}: {config.num_hidden_layers} layers, "
                         f"hidden {config.hidden_size}, {config.num_attention_heads} heads)") from None


def base_config(base_model: str):
    """The base model's config: from a preset's spec, a local folder, or the local hub cache."""
    from transformers import AutoConfig, XLMRobertaConfig

    from kdtune.models.preset import PREFIX, get_spec, is_packaged

    if base_model.startswith(PREFIX) and is_packaged(base_model[len(PREFIX):]):
        from kdtune.models.packaged import config

        return config(base_model[len(PREFIX):])  # UsageError naming the install command if absent
    if base_model.startswith(PREFIX):
        _, p = get_spec(base_model[len(PREFIX):])
        return XLMRobertaConfig(hidden_size=p.hidden, num_hidden_layers=p.layers,
                                num_attention_heads=p.heads, intermediate_size=p.intermediate)
    try:
        return AutoConfig.from_pretrained(base_model, local_files_only=True)
    except Exception:  # noqa: BLE001 - not available offline; not an input error
        if Path(base_model).expanduser().exists() or base_model.startswith(("/", "./", "../")):
            raise UsageError(f"base_model: {base_model} is not a model folder (no config.json)") from None
        return None


def writable(path: Path) -> bool:
    """Whether `path` can be created and written: probed in its nearest existing ancestor."""
    import tempfile

    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def run_sweep(
    spec: SweepSpec,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
    address: str | None = None,
    rerun_failed: bool = False,
    force: bool = False,
    out: TextIO | None = None,
) -> SweepOutcome:
    from kdtune.tracking.runs import CONFIG_HASH, Tracker
    from kdtune.tracking.store import default_root, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri or spec.tracking_uri)
    store = Path(storage or spec.storage or default_root()).expanduser().resolve()
    preflight(spec, uri, store, address)
    store.mkdir(parents=True, exist_ok=True)

    tracker = Tracker.open(uri, spec.experiment)
    parent, created = tracker.sweep_run(spec.name)
    say = lambda msg: print(msg, file=out or sys.stdout, flush=True)  # noqa: E731
    say(f"sweep {spec.name}: {'new' if created else 'resuming'} parent run {parent} "
        f"in experiment {spec.experiment!r} at {uri}")
    tracker.log_text(parent, spec.source, "sweep.yaml")
    tracker.log_dict(parent, [{"config_hash": t.config_hash, "run_name": t.run_name, **t.to_dict()}
                              for t in spec.trials], "grid.json")
    tracker.log_params(parent, {"trials": len(spec.trials), "sweep_file": spec.path})

    outcome = SweepOutcome(parent, tracker.experiment_id, uri)
    by_hash: dict[str, list] = {}
    for run in tracker.trial_runs(parent):
        by_hash.setdefault(run.data.tags.get(CONFIG_HASH, ""), []).append(run)
    todo: list[TrialConfig] = []
    for t in spec.trials:
        runs = by_hash.get(t.config_hash, [])
        for r in runs:
            if r.info.status == "RUNNING":  # its driver died: nothing is running it now
                tracker.set_tags(r.info.run_id, {"kdtune.orphaned": "driver stopped"})
                tracker.end_run(r.info.run_id, "KILLED")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        failed = [r for r in runs if r.info.status == "FAILED"]
        if finished and force:
            for r in finished:  # keep one FINISHED run per config hash
                tracker.set_tags(r.info.run_id, {"kdtune.superseded": "--force"})
                tracker.end_run(r.info.run_id, "KILLED")
        elif finished:
            outcome.skipped.append(t.config_hash)
            continue
        elif failed and not rerun_failed and not force:
            outcome.skipped.append(t.config_hash)
            outcome.failed += 1
            continue
        todo.append(t)
    say(f"  {len(spec.trials)} trials: {len(outcome.skipped)} already ended (skipped), {len(todo)} to run")
    if not todo:
        tracker.end_run(parent, "FINISHED" if outcome.ok else "FAILED")
        return outcome

    prepare_presets(todo, say)
    _init_ray(address, store)
    try:
        train_teachers(todo, store, tracker, spec, say)
        started_ms = int(time.time() * 1000)
        _run_tuner(spec, todo, tracker, parent, store, say)  # how trials ended: read back from MLflow
    except KeyboardInterrupt:
        tracker.end_run(parent, "KILLED")
        raise
    outcome.ran = [t.config_hash for t in todo]
    _settle_runs(tracker, parent, todo, outcome, early_stop=spec.scheduler is not None, since_ms=started_ms)
    tracker.end_run(parent, "KILLED" if outcome.interrupted else "FINISHED" if outcome.ok else "FAILED")
    print_summary(tracker, parent, spec, say)
    return outcome


def _init_ray(address: str | None, store: Path) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"--address {address}: could not connect to the Ray cluster ({first})") from None
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 1024**2, configure_logging=False)


def prepare_presets(trials: list[TrialConfig], say: Callable) -> None:
    """Build the offline presets the trials name, here and visibly (once; then cached by content)."""
    import json

    from kdtune.models.preset import PREFIX, build_preset, is_packaged

    for base, dataset, data_dir in sorted({(t.base_model, t.dataset, t.data_dir or "") for t in trials}):
        if not base.startswith(PREFIX):
            continue
        if is_packaged(base[len(PREFIX):]):
            say(f"  preset {base[len(PREFIX):]}: unpacking or reusing the pretrained model (cached)")
        else:
            say(f"  preset {base[len(PREFIX):]} on {dataset}: building or reusing (tokenizer + brief MLM, cached)")
        path = build_preset(base[len(PREFIX):], dataset, data_dir or None)
        info = json.loads((path / "preset.json").read_text())
        start, end = info.get("mlm_loss_start"), info.get("mlm_loss_end")
        say(f"  preset ready: {path}" + (f" (MLM loss {start:.2f} -> {end:.2f})" if start and end else ""))


def train_teachers(
    trials: list[TrialConfig], store: Path, tracker, spec: SweepSpec, say: Callable, progress_every_s: float = 60.0
) -> None:
    """Fine-tune every teacher the trials need and the store lacks: in parallel, once each."""
    import ray

    from kdtune.teachers import is_complete, teacher_path

    needed: dict[str, TrialConfig] = {}
    for t in trials:
        if not is_complete(teacher_path(store, t.teacher_key)):
            needed.setdefault(t.teacher_key, t)
    if not needed:
        return
    say(f"  training {len(needed)} teacher(s) first")
    # A teacher trains for minutes to hours: its task posts one status line to this actor (works
    # across nodes), and the driver prints what changed every `progress_every_s` while waiting.
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    task = ray.remote(_teacher_task).options(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)
    pending = {task.remote(t.to_dict(), str(store), spec.resources.cpu, tracker, spec.name, board): key
               for key, t in needed.items()}
    shown: dict[str, str] = {}
    watch = _wait_watch(spec, say)
    next_progress = time.monotonic() + progress_every_s
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=min(progress_every_s, watch.poll_s))
            for ref in done:
                key = pending.pop(ref)
                info = ray.get(ref)
                if info is None:  # the store had it by the time the task ran (another process trained it)
                    continue
                say(f"  teacher {key}: best val {info['metric']} {info['best_val']:.4f} (seed {info['best_seed']}, "
                    f"{info['train_seconds']:.0f} s)")
            if not done:
                lines = ray.get(board.lines.remote())
                started = set(pending.values()) & set(lines)  # a task posts as soon as it starts
                watch.update(waiting=len(pending) - len(started), running=len(started))
                if time.monotonic() < next_progress:
                    continue
                next_progress = time.monotonic() + progress_every_s
                for key in sorted(started):
                    if shown.get(key) != lines[key]:
                        shown[key] = lines[key]
                        say(f"  {lines[key]}")
    finally:
        ray.kill(board)


def _wait_watch(spec: SweepSpec, say: Callable):
    """Tells why queued teachers/trials do not start (see kdtune/resources_check.py)."""
    import ray

    from kdtune.resources_check import WaitWatch, request_of

    return WaitWatch(request_of(spec.resources), say, lambda: (ray.nodes(), ray.available_resources()))


class ProgressBoard:
    """The latest status line per teacher key (a Ray actor in `train_teachers`)."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    def post(self, key: str, line: str) -> None:
        self._lines[key] = line

    def lines(self) -> dict[str, str]:
        return dict(self._lines)


def _teacher_task(trial_dict: dict, store: str, cpus: float, tracker, sweep: str, board=None):
    import torch

    from kdtune.config import make_trial
    from kdtune.teachers import ensure_teacher
    from kdtune.tracking.teachers import log_teacher

    torch.set_num_threads(max(1, int(cpus)))  # Ray sets OMP_NUM_THREADS=1 in workers
    trial = make_trial(trial_dict)
    got: dict = {}

    def on_trained(info: dict, folder) -> None:
        got.update(info)
        log_teacher(tracker, trial.teacher_key, info, folder, sweep)

    if board is not None:  # the driver counts a teacher as running (not waiting for resources) from here
        board.post.remote(trial.teacher_key, f"teacher {trial.teacher_key}: started")
    posted = [0.0]

    def progress(line: str) -> None:
        if board is not None and time.monotonic() - posted[0] >= 5:  # one actor call per 5 s at most
            posted[0] = time.monotonic()
            board.post.remote(trial.teacher_key, line)

    ensure_teacher(trial, store, on_trained=on_trained, log=lambda m: None, progress=progress)
    return got or None


def _run_tuner(spec: SweepSpec, todo: list[TrialConfig], tracker, parent: str, store: Path, say: Callable):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from kdtune.trainable import run_trial

    ctx = {"uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent": parent,
           "store": str(store), "cpus": spec.resources.cpu, "sweep": spec.name}
    scheduler = None
    if spec.scheduler:
        s = spec.scheduler
        scheduler = ASHAScheduler(time_attr="training_iteration", grace_period=s.grace_period,
                                  reduction_factor=s.reduction_factor, max_t=s.max_t)
    trainable = tune.with_resources(run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([t.to_dict() for t in todo]), "ctx": ctx},
        tune_config=tune.TuneConfig(
            metric=f"val_{spec.metric}", mode="max", scheduler=scheduler, reuse_actors=True,
            max_concurrent_trials=spec.max_concurrent or None,
            trial_name_creator=lambda tr: _trial_label(tr.config),
            trial_dirname_creator=lambda tr: _trial_label(tr.config).replace("/", "_"),
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(store / "ray"),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[ProgressLines(say, len(todo), _wait_watch(spec, say))],
            verbose=0,
        ),
    )
    return tuner.fit()


def _trial_label(config: dict) -> str:
    from kdtune.config import make_trial

    return make_trial(config["trial"]).run_name


def _settle_runs(
    tracker, parent: str, todo: list[TrialConfig], outcome: SweepOutcome, early_stop: bool, since_ms: int = 0
) -> None:
    """Count how this run's trials ended; runs Ray stopped are KILLED with the reason, none left RUNNING.

    Ray Tune catches Ctrl-C (SIGINT) itself and returns from `fit` as if done, and a trial sees the
    same stop as an early stop, so an interrupt is recognised here: a trial of the grid that never
    started, or (without a scheduler, the only other thing that stops trials) one Ray stopped.
    With ASHA, an interrupted running trial cannot be told from an early-stopped one.
    """
    from kdtune.tracking.runs import CONFIG_HASH, INTERRUPTED, STOPPED_BY_RAY

    wanted = {t.config_hash for t in todo}
    runs = [r for r in tracker.trial_runs(parent) if r.data.tags.get(CONFIG_HASH) in wanted]
    never_started = wanted - {r.data.tags.get(CONFIG_HASH) for r in runs}
    stopped = [r for r in runs if r.info.status == "RUNNING" or (
        r.info.status == "KILLED" and r.info.start_time >= since_ms
        and r.data.tags.get("kdtune.stopped", "").startswith(STOPPED_BY_RAY))]
    interrupted = bool(never_started) or (bool(stopped) and not early_stop)
    for run in stopped:
        if interrupted:
            # Its own tag: the trial's process may still be writing `kdtune.stopped` as it exits.
            tags = {INTERRUPTED: "the next run of the sweep resumes it from its checkpoint"}
        else:
            tags = {"kdtune.stopped": "early stopped by the scheduler" if early_stop else STOPPED_BY_RAY}
        tracker.set_tags(run.info.run_id, tags)
        if run.info.status == "RUNNING":
            tracker.end_run(run.info.run_id, "KILLED")
    if interrupted:
        outcome.interrupted = len(stopped) + len(never_started)
    else:
        outcome.early_stopped = len(stopped)
    outcome.finished = sum(r.info.status == "FINISHED" for r in runs)
    outcome.failed = sum(r.info.status == "FAILED" for r in runs)


def print_summary(tracker, parent: str, spec: SweepSpec, say: Callable) -> None:
    runs = sorted(tracker.trial_runs(parent), key=lambda r: r.info.run_name or "")
    metric = spec.metric
    say(f"\n{'run':58s} {'status':9s} {'val ' + metric:>12s} {'test ' + metric:>13s}")
    for r in runs:
        if r.data.tags.get("kdtune.superseded"):
            continue
        m = r.data.metrics
        val = f"{m[f'best_val_{metric}']:.4f}" if f"best_val_{metric}" in m else "-"
        test = f"{m[f'test_{metric}']:.4f}" if f"test_{metric}" in m else "-"
        say(f"{(r.info.run_name or '')[:58]:58s} {r.info.status:9s} {val:>12s} {test:>13s}")


try:
    from ray.tune import Callback as _TuneCallback
except Exception:  # pragma: no cover - ray missing: only --dry-run works
    _TuneCallback = object


class ProgressLines(_TuneCallback):
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
        self.say(f"{self._prefix()} start  {trial.trial_id} {_trial_label(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        metric = result.get("metric")
        if not metric:
            return
        if trial.trial_id not in self.placed and result.get("node"):
            self.placed.add(trial.trial_id)
            self.say(f"{self._prefix()} node   {_trial_label(trial.config)} runs on {result['node']}")
        extra = f" test {result['test']:.4f}" if "test" in result else ""
        self.say(f"{self._prefix()} eval   {_trial_label(trial.config)} step {result.get('step', '?')} "
                 f"val {metric} {result[f'val_{metric}']:.4f} best {result.get('best_val', float('nan')):.4f}{extra}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self.say(f"{self._prefix()} done   {_trial_label(trial.config)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self.say(f"{self._prefix()} FAILED {_trial_label(trial.config)} (see the run's error.txt in MLflow)")
