"""Searches end to end: real Ray Tune + MLflow (sqlite) on synthetic data with the micro preset.

One Ray and one store for the module (the teacher trains once): a random search (draws matched by
hash, the parent run's best trial and summary, `kdtune best` pasted back, the report's section),
and the HyperBand and median stopping rules each stopping a hopeless trial (ASHA's test is in
test_reliability.py). The Optuna search killed and resumed: test_search_resume.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdtune.cli import main
from micro import local_ray, micro_sweep

pytestmark = pytest.mark.slow

EXPERIMENT = "kdtune-search"
FIXED = {"eval_steps": 5, "teacher_warmup_ratio": 0.0}  # the student's warm-up is sampled: the teacher stays one


@pytest.fixture(scope="module")
def store(tmp_path_factory, kdtune_cache):
    root = tmp_path_factory.mktemp("search")
    with local_ray():
        yield {"root": root, "uri": f"sqlite:///{root}/mlruns/mlflow.db", "store": root / "mlruns"}


def write(store, name: str, **sections) -> Path:
    return micro_sweep(store["root"] / f"{name}.yaml", name, EXPERIMENT, FIXED, **sections)


def sweep(store, path: Path, *extra) -> int:
    return main(["sweep", str(path), "--tracking-uri", store["uri"], "--storage", str(store["store"]), *extra])


def runs(store, sweep_name: str, kind: str = "trial"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store["uri"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client, client.search_runs([exp.experiment_id], f"tags.`kdtune.kind` = '{kind}' and "
                                      f"tags.`kdtune.sweep` = '{sweep_name}'")


RANDOM = {"space": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "warmup_ratio": {"uniform": [0.0, 0.3]}},
          "search": {"algorithm": "random", "num_samples": 3, "seed": 3}, "max_concurrent": 2}


@pytest.fixture(scope="module")
def random_search(store):
    path = write(store, "random", **RANDOM)
    assert sweep(store, path) == 0
    return path


def test_a_random_search_runs_its_seeded_draws_and_matches_them_by_hash(store, random_search, capsys):
    from kdtune.config import load_sweep

    drawn = {t.config_hash: t for t in load_sweep(random_search).trials}
    client, trials = runs(store, "random")
    assert len(trials) == 3 and {r.info.status for r in trials} == {"FINISHED"}
    assert {r.data.tags["kdtune.config_hash"] for r in trials} == set(drawn)
    for r in trials:  # the sampled values are params and a tag, as drawn
        t = drawn[r.data.tags["kdtune.config_hash"]]
        assert float(r.data.params["lr"]) == t.lr and float(r.data.params["warmup_ratio"]) == t.warmup_ratio
        assert json.loads(r.data.tags["kdtune.sampled"]) == {"lr": t.lr, "warmup_ratio": t.warmup_ratio}
        assert r.info.run_name.endswith(f"/lr={t.lr:.4g},warmup_ratio={t.warmup_ratio:.4g}")
    _, teachers = runs(store, "random", "teacher")
    assert len(teachers) == 1  # teacher_warmup_ratio pins it: one teacher for every sampled warm-up
    capsys.readouterr()
    assert sweep(store, random_search) == 0  # the same command again: the draws are matched, nothing runs
    assert "3 trials: 3 already ended (skipped), 0 to run" in capsys.readouterr().out
    assert len(runs(store, "random")[1]) == 3


def test_the_parent_run_holds_the_best_trial_and_a_summary(store, random_search):
    client, trials = runs(store, "random")
    (parent,) = runs(store, "random", "sweep")[1]
    best = max(trials, key=lambda r: r.data.metrics["best_val_micro_f1"])
    tags = parent.data.tags
    assert tags["kdtune.best_run"] == best.info.run_id
    assert tags["best.lr"] == best.data.params["lr"] and tags["best.warmup_ratio"] == best.data.params["warmup_ratio"]
    assert parent.data.metrics["best_val_micro_f1"] == best.data.metrics["best_val_micro_f1"]
    history = client.get_metric_history(parent.info.run_id, "best_val_micro_f1")
    assert len(history) >= 2 and history[-1].value == max(h.value for h in history)  # updated as trials ended
    note = tags["mlflow.note.content"]
    assert "random search, 3 samples x 1 grid point(s)" in note and "Trials: 3 finished, 0 failed, 0 stopped" in note
    assert note.index(best.info.run_id[:8]) < min(note.index(r.info.run_id[:8]) for r in trials if r is not best)
    exp = client.get_experiment(parent.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_kdtune_best_prints_a_fixed_block_that_runs_as_the_same_config(store, random_search, capsys, tmp_path):
    client, trials = runs(store, "random")
    best = max(trials, key=lambda r: r.data.metrics["best_val_micro_f1"])
    capsys.readouterr()
    assert main(["best", "--experiment", "kdtune-search", "--sweep", "random", "--tracking-uri", store["uri"]]) == 0
    out = capsys.readouterr().out
    assert f"run {best.info.run_id}" in out and f"best_val micro_f1 {best.data.metrics['best_val_micro_f1']:.4f}" in out
    pasted = tmp_path / "pasted.yaml"
    pasted.write_text("name: pasted\n" + out[out.index("fixed:"):])
    assert main(["sweep", str(pasted), "--dry-run"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("1 ")][0]
    assert line.split()[1] == best.data.tags["kdtune.config_hash"]
    assert main(["best", "--experiment", "kdtune-search", "--sweep", "nope", "--tracking-uri", store["uri"]]) == 2


def test_the_report_shows_the_search(store, random_search, tmp_path):
    out = tmp_path / "report"
    assert main(["report", "--experiment", "kdtune-search", "--tracking-uri", store["uri"], "--out", str(out),
                 "--no-log-artifacts"]) == 0
    text = (out / "report.md").read_text()
    section = text.split("## Search: random", 1)[1]
    assert section.count("\n| ") >= 4 and (out / "search_random.png").is_file()


STOPPING = {  # a contrived grid: hopeless learning rates beside a good one
    "hyperband": {"grid": {"lr": [3.0e-3, 2.0e-3, 3.0e-9, 2.0e-9]},  # brackets of 2 and 2: one halved
                  "scheduler": {"type": "hyperband", "max_t": 3, "reduction_factor": 3}, "max_concurrent": 0},
    "median": {"grid": {"lr": [3.0e-3, 1.0e-9]},
               "scheduler": {"type": "median", "grace_period": 2, "min_samples_required": 1}, "max_concurrent": 1},
}


@pytest.mark.parametrize("rule", sorted(STOPPING))
def test_each_stopping_rule_stops_a_trial_and_marks_its_run_killed(store, rule):
    assert sweep(store, write(store, rule, **STOPPING[rule])) == 0
    _, trials = runs(store, rule)
    assert len(trials) == len(STOPPING[rule]["grid"]["lr"])
    assert "RUNNING" not in {r.info.status for r in trials}
    stopped = [r for r in trials if r.info.status == "KILLED"]
    assert stopped and all(r.data.tags["kdtune.stopped"] == "early stopped by the scheduler" for r in stopped)
    assert all("test_macro_f1" not in r.data.metrics for r in stopped)
    assert [r for r in trials if r.info.status == "FINISHED"]  # the rest ran to the end
    if rule == "median":
        assert [float(r.data.params["lr"]) for r in stopped] == [1e-9]


def _raw_late_write(tracker, run_id):  # a trial thread between reading the tags and writing
    from kdtune.tracking.tags import STOPPED, STOPPED_BY_RAY
    tracker.set_tags(run_id, {STOPPED: STOPPED_BY_RAY})
    tracker.end_run(run_id, "KILLED")


def test_the_early_stop_verdict_survives_a_late_trial_write(tmp_path, monkeypatch):
    """Ray Tune can return from `fit` while a stopped trial's thread still ends its run; on a
    loaded machine that write came last and replaced the driver's "early stopped" verdict. Two
    guards, each tested alone and in a fixed order (no threads, no sleeps): the trial keeps a
    verdict already written, and the driver waits for RUNNING trials to end before writing it."""
    from kdtune.sweep import outcome as outcome_module
    from kdtune.sweep.outcome import SweepOutcome, settle_runs
    from kdtune.sweep.lifecycle import TrialLifecycle
    from kdtune.tracking.runs import Tracker
    from kdtune.tracking.tags import CONFIG_HASH, EARLY_STOPPED, STOPPED

    tracker = Tracker.open(f"sqlite:///{tmp_path / 'mlflow.db'}", "late")
    parent = tracker.start_run("sweep", {})

    def settled(child, grace_s):
        out = SweepOutcome(parent, tracker.experiment_id, tracker.uri)
        settle_runs(tracker, parent, {tracker.client.get_run(child).data.tags[CONFIG_HASH]}, out,
                    early_stop=True, grace_s=grace_s)
        run = tracker.client.get_run(child)
        assert out.early_stopped == 1 and out.interrupted == 0
        assert run.info.status == "KILLED" and run.data.tags[STOPPED] == EARLY_STOPPED

    # the trial keeps the verdict: the driver writes first (no wait), the trial's end comes after
    child = tracker.start_run("trial", {CONFIG_HASH: "h1"}, parent=parent)
    settled(child, grace_s=0.0)
    TrialLifecycle(tracker, child).stopped()
    run = tracker.client.get_run(child)
    assert run.info.status == "KILLED" and run.data.tags[STOPPED] == EARLY_STOPPED

    # the driver waits: the trial's raw write (which would replace a verdict) lands during its wait
    child = tracker.start_run("trial", {CONFIG_HASH: "h2"}, parent=parent)
    waits = []
    monkeypatch.setattr(outcome_module.time, "sleep",
                        lambda s: waits.append(s) or (len(waits) == 1 and _raw_late_write(tracker, child)))
    settled(child, grace_s=10.0)
    assert len(waits) == 1
