"""Failures inside a sweep (retries, permanent failures) and bad input rejected before any work.

Ray workers inherit the environment of the Ray started here, so the fault-injection hook
(KDTUNE_FAULT) is set before `ray.init`.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from kdtune.cli import main
from micro import local_ray, micro_sweep

# seed 7 fails once, then succeeds; seed 8 runs out of (CUDA) memory on its first two attempts
FAULTS = "/s7:1,/s8:2:oom"


@pytest.fixture(scope="module")
def ray_with_faults(kdtune_cache):
    os.environ["KDTUNE_FAULT"] = FAULTS
    try:
        with local_ray():
            yield
    finally:
        os.environ.pop("KDTUNE_FAULT", None)


def reliability_sweep(path: Path, name: str, seeds: list[int], **sections) -> Path:
    return micro_sweep(path, name, "kdtune-reliability", grid={"seed": seeds}, max_failures=1, **sections)


@pytest.fixture(scope="module")
def faults(tmp_path_factory, ray_with_faults):
    """Seed 6 runs, 7 is retried into one FINISHED run, 8 fails for good on OOM, 9 diverges (NaN);
    then the same command again, then again with --rerun-failed. Runs by seed after each."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("faults")
    sweep = reliability_sweep(root / "s.yaml", "faults", [6, 7, 8, 9],
                              overrides=[{"match": {"seed": 9}, "set": {"lr": 1.0e+30}}])
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    argv = ["sweep", str(sweep), "--tracking-uri", uri, "--storage", str(root / "mlruns")]
    client = MlflowClient(uri)

    def by_seed() -> dict:
        exp = client.get_experiment_by_name("kdtune-reliability")
        runs = {}
        for r in client.search_runs([exp.experiment_id], "tags.`kdtune.kind` = 'trial'"):
            runs.setdefault(r.data.params["seed"], []).append(r)
        assert {s: len(rs) for s, rs in runs.items()} == {"6": 1, "7": 1, "8": 1, "9": 1}  # retries reuse the run
        return {s: rs[0] for s, rs in runs.items()}

    out = {"root": root, "client": client, "codes": [main(argv)], "runs": [by_seed()]}
    out["codes"].append(main(argv))  # a rerun leaves the failed trials alone
    out["runs"].append(by_seed())
    out["codes"].append(main([*argv, "--rerun-failed"]))
    out["runs"].append(by_seed())
    return out


@pytest.mark.slow
def test_a_flaky_trial_is_retried_into_one_finished_run(faults):
    assert faults["codes"][0] == 1  # trials failed for good: the command says so
    first = faults["runs"][0]
    assert first["6"].info.status == "FINISHED" and first["6"].data.tags["kdtune.attempts"] == "1"
    assert first["7"].info.status == "FINISHED" and first["7"].data.tags["kdtune.attempts"] == "2"


@pytest.mark.slow
def test_out_of_memory_fails_for_good_and_is_named_in_the_failure_tag(faults):
    oom = faults["runs"][0]["8"]
    assert oom.info.status == "FAILED" and oom.data.tags["kdtune.attempts"] == "2"  # max_failures 1
    tag = oom.data.tags["kdtune.failure"]
    assert tag.startswith("CUDA out of memory: ") and "injected fault" in tag
    error = Path(faults["client"].download_artifacts(oom.info.run_id, "error.txt", str(faults["root"]))).read_text()
    assert "Traceback" in error and "OutOfMemoryError: CUDA out of memory (injected fault" in error


@pytest.mark.slow
def test_a_nan_loss_fails_the_trial_at_once_without_a_retry(faults):
    nan = faults["runs"][0]["9"]
    assert nan.info.status == "FAILED" and nan.data.tags["kdtune.attempts"] == "1"  # max_failures 1, not used
    assert nan.data.tags["kdtune.failure"].startswith("non-finite training loss at step ")


@pytest.mark.slow
def test_a_rerun_leaves_failed_trials_alone(faults):
    first, again = faults["runs"][0], faults["runs"][1]
    assert faults["codes"][1] == 1
    assert {s: (r.info.status, r.info.end_time) for s, r in again.items()} == \
        {s: (r.info.status, r.info.end_time) for s, r in first.items()}


@pytest.mark.slow
def test_rerun_failed_runs_failed_trials_again_in_their_runs(faults):
    first, last = faults["runs"][0], faults["runs"][2]
    assert faults["codes"][2] == 1  # seed 9 diverges again
    assert {s: r.info.run_id for s, r in last.items()} == {s: r.info.run_id for s, r in first.items()}
    # seed 8's third attempt has no fault: it finishes
    assert last["8"].info.status == "FINISHED" and last["8"].data.tags["kdtune.attempts"] == "3"
    assert "test_macro_f1" in last["8"].data.metrics
    assert last["9"].info.status == "FAILED" and last["9"].data.tags["kdtune.attempts"] == "2"
    for s in ("6", "7"):  # FINISHED trials are not touched
        assert last[s].info.end_time == first[s].info.end_time


# --- bad input: exit 2, one line naming the key or file, nothing written ------------------------

GOOD = """
name: bad
fixed:
  dataset: synthetic
  base_model: preset:micro
  epochs: 1
grid:
  init: [teacher]
resources: {cpu: 1}
"""


def case(yaml_text: str | None = None, args: tuple = (), sets: tuple = ()):
    return (yaml_text, args, sets)


BAD_INPUTS = {
    "missing sweep file": (case(None), "nope.yaml"),
    "invalid yaml": (case("fixed: {epochs: [1\n"), "not valid YAML"),
    "binary file": (case(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff"), "s.yaml: not a UTF-8 text file"),
    "unknown top-level key": (case(GOOD + "gird: {}\n"), "gird: unknown key (did you mean 'grid'?)"),
    "unknown trial field": (case(GOOD, sets=("fixed.epoch=3",)), "fixed.epoch: unknown trial field (did you mean 'epochs'?)"),
    "wrong type": (case(GOOD, sets=("fixed.kd=maybe",)), "fixed.kd: expected true or false"),
    "unknown init": (case(GOOD, sets=("grid.init=[teacher, copy]",)), "grid.init: 'copy' not allowed; allowed: teacher, base, scratch"),
    "unknown dataset": (case(GOOD, sets=("fixed.dataset=imdb",)), "dataset: 'imdb' not allowed"),
    "unknown partition": (case(GOOD, sets=("fixed.train_partition=sen",)), "train_partition"),
    "unknown language": (case(GOOD, sets=("fixed.eval_partition=[en, xx-YY]",)), "eval_partition"),
    "fraction zero": (case(GOOD, sets=("fixed.fraction=0",)), "fraction: 0.0 out of range"),
    "fraction above one": (case(GOOD, sets=("fixed.fraction=1.01",)), "fraction: 1.01 out of range"),
    "unknown layer map": (case(GOOD, sets=("fixed.layer_map=odd",)), "layer_map: 'odd' not allowed"),
    "hidden not compatible with heads": (case(GOOD, sets=("fixed.hidden=33",)), "hidden"),
    "layers above teacher layers": (case(GOOD, sets=("fixed.layers=9",)), "layers"),
    "layer list too long": (case(GOOD, sets=("fixed.layers=2", "fixed.layer_map=[0, 1, 2]")), "layer_map"),
    "unknown preset": (case(GOOD, sets=("fixed.base_model=preset:huge",)), "unknown preset 'huge'"),
    "missing base model folder": (case(GOOD, sets=("fixed.base_model=/nonexistent/model",)), "base_model"),
    "gpu on a machine without one": (case(GOOD, sets=("resources.gpu=1",)), "resources.gpu"),
    "data_dir missing": (case(GOOD, sets=("fixed.data_dir=/nonexistent/data",)), "data_dir"),
    "tracking uri unwritable": (case(GOOD, args=("--tracking-uri", "sqlite:////proc/kdtune/mlflow.db")), "tracking uri"),
    "tracking server unreachable": (case(GOOD, args=("--tracking-uri", "http://127.0.0.1:9")), "tracking uri http://127.0.0.1:9"),
    "ray cluster down": (case(GOOD, args=("--address", "127.0.0.1:9")), "--address 127.0.0.1:9: no Ray cluster answers"),
    "storage not writable": (case(GOOD, args=("--storage", "/proc/kdtune-store")), "storage"),
    "malformed --set": (case(GOOD, sets=("fixed.epochs",)), "expected KEY=VALUE"),
    "unknown scheduler": (case(GOOD + "scheduler: {type: pbt}\n"), "scheduler.type: 'pbt' not supported"),
    "negative max_failures": (case(GOOD + "max_failures: -1\n"), "max_failures"),
    "grid axis not a list": (case(GOOD, sets=("grid.seed=3",)), "grid.seed: expected a non-empty list"),
    "negative loss weight": (case(GOOD, sets=("fixed.w_att=-1",)), "w_att"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    (yaml_text, args, sets), needle = BAD_INPUTS[name]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sweep = "nope.yaml"
    if yaml_text is not None:
        write = Path("s.yaml").write_bytes if isinstance(yaml_text, bytes) else Path("s.yaml").write_text
        write(yaml_text)
        sweep = "s.yaml"
    argv = ["sweep", sweep, *args]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kdtune: error: ") and needle in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.yaml"] if yaml_text is not None else [])


@pytest.mark.slow
def test_asha_early_stops_hopeless_trials_and_marks_their_runs_killed(tmp_path, ray_with_faults):
    from mlflow.tracking import MlflowClient

    sweep = reliability_sweep(tmp_path / "s.yaml", "asha", [1], max_concurrent=1,
                              scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 10})
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    on_sigint, on_sigusr1 = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)
    code = main(["sweep", str(sweep), "--tracking-uri", uri, "--storage", str(tmp_path / "mlruns"),
                 "--set", "grid.lr=[3.0e-3, 1.0e-9, 2.0e-9]", "--set", "fixed.epochs=3",
                 # not the default: ASHA must compare val_micro_f1 (Ray fails a trial whose results
                 # lack the scheduler's metric)
                 "--set", "fixed.metric=micro_f1"])
    assert code == 0
    # Tune's Ctrl-C handler does not outlive the sweep: a later Ctrl-C or SIGTERM in this process
    # must stop what runs then, not flag the finished Tune run
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)) == (on_sigint, on_sigusr1)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("kdtune-reliability")
    trials = client.search_runs([exp.experiment_id], "tags.`kdtune.sweep` = 'asha' and tags.`kdtune.kind` = 'trial'")
    assert len(trials) == 3 and "RUNNING" not in {r.info.status for r in trials}
    stopped = [r for r in trials if r.info.status == "KILLED"]
    assert stopped and all("early" in r.data.tags["kdtune.stopped"] for r in stopped)
    assert all(float(r.data.params["lr"]) < 1e-6 for r in stopped)
    assert all("test_macro_f1" not in r.data.metrics for r in stopped)
    assert all(r.data.params["metric"] == "micro_f1" for r in trials)


def test_a_second_driver_of_a_running_sweep_exits_2_and_changes_nothing(tmp_path, monkeypatch, capsys):
    """The lease check at the command line, with a live process of this host holding the lease."""
    import socket
    import subprocess
    import sys
    import time

    from kdtune.sweep.lease import live_holder
    from kdtune.tracking.runs import Tracker

    monkeypatch.chdir(tmp_path)  # the default store, ./mlruns, is the one both drivers use
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    Path("s.yaml").write_text(GOOD)
    tracker = Tracker.open(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "kdtune-bad")
    parent, _ = tracker.sweep_run("bad")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # the live driver
    try:
        tracker.set_tags(parent, {"kdtune.driver.host": socket.gethostname(), "kdtune.driver.pid": holder.pid,
                                  "kdtune.driver.heartbeat": time.time()})
        before = tracker.client.get_run(parent)
        capsys.readouterr()  # MLflow's own lines from creating the store above
        assert main(["sweep", "s.yaml"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            f"kdtune: error: sweep bad is already running: driver pid {holder.pid} on host {socket.gethostname()} "
            f"(parent run {parent}, heartbeat "), err
        assert f"kill {holder.pid} on {socket.gethostname()}" in err
        after = tracker.client.get_run(parent)
        assert (after.info.status, after.data.tags) == (before.info.status, before.data.tags)
        assert [r.info.run_id for r in tracker.find_runs("")] == [parent]  # no run created or touched
    finally:
        holder.kill()
        holder.wait()
    # its driver gone, the same lease is dead: the next driver takes over at once
    assert live_holder("RUNNING", after.data.tags, now=time.time(), host=socket.gethostname(), pid=0) is None


def test_sigterm_before_the_trials_run_exits_130_with_a_resume_line(monkeypatch, capsys):
    """A SIGTERM while presets build or teachers train (before Tune's graceful stop is in place)
    ends the command with the resume line and exit code 130, not a KeyboardInterrupt traceback."""
    import time

    import kdtune.sweep

    def stopped_in_the_teacher_stage(spec, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or a batch scheduler sends
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the sweep")

    monkeypatch.setattr(kdtune.sweep, "run_sweep", stopped_in_the_teacher_stage)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["sweep", str(Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml")]) == 130
    assert "run the same command again to resume" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before
