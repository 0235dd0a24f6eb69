"""End to end: real Ray Tune + real MLflow (sqlite) on the real tsm files with an offline preset.

One Ray for the whole module. The grid is small (2 inits x NON-KD/KD) and the model micro, so the
module runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from micro import local_ray

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_session():
    with local_ray():
        yield


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_data, kdtune_cache, ray_session):
    root = tmp_path_factory.mktemp("sweep")
    sweep = root / "tsm-small.yaml"
    sweep.write_text(textwrap.dedent(f"""
        # a small Table 2 on tsm
        name: tsm-small
        tracking: {{experiment: kdtune-test}}
        fixed:
          dataset: tsm
          data_dir: {shared_data}
          base_model: preset:micro
          fraction: 0.05
          epochs: 2
          batch_size: 32
          lr: 1.0e-3
          eval_steps: 10
          log_steps: 5
          max_length: 48
          teacher_max_steps: 60
          teacher_batch_size: 32
          teacher_lr: 1.0e-3
          teacher_eval_steps: 30
          save_model: true
        grid:
          init: [teacher, scratch]
          kd: [false, true]
        resources: {{cpu: 1}}
        max_concurrent: 2
    """))
    return {"root": root, "sweep": sweep, "uri": f"sqlite:///{root}/mlruns/mlflow.db", "store": root / "mlruns"}


def run_cli(env, *extra) -> int:
    from kdtune.cli import main

    return main(["sweep", str(env["sweep"]), "--tracking-uri", env["uri"], "--storage", str(env["store"]), *extra])


def client_runs(env, kind: str | None = None):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["uri"])
    exp = client.get_experiment_by_name("kdtune-test")
    filt = f"tags.`kdtune.kind` = '{kind}'" if kind else ""
    return client, client.search_runs([exp.experiment_id], filt, max_results=1000)


@pytest.fixture(scope="module")
def first_run(env):
    assert run_cli(env) == 0
    return client_runs(env)


def test_grid_runs_are_nested_finished_and_fully_logged(env, first_run):
    client, runs = first_run
    parents = [r for r in runs if r.data.tags.get("kdtune.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("kdtune.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert {(r.data.params["init"], r.data.params["kd"]) for r in trials} == {
        ("teacher", "False"), ("teacher", "True"), ("scratch", "False"), ("scratch", "True")}
    for r in trials:
        for key in ("dataset", "init", "kd", "train_partition", "eval_partition", "fraction", "seed", "hidden", "layers"):
            assert key in r.data.params
        assert 0 <= r.data.metrics["test_macro_f1"] <= 1
        assert {f"test_macro_f1/{lang}" for lang in ("arabic", "english", "spanish")} <= set(r.data.metrics)
        history = client.get_metric_history(r.info.run_id, "train_loss")
        assert len(history) >= 3 and history[0].step < history[-1].step
    # The two KD trials distil over the same rows (same fraction and seed): one builds the
    # teacher cache, the other reads it (another Ray worker process); NON-KD trials have none.
    cache = sorted(r.data.tags.get("kdtune.teacher_cache") for r in trials if r.data.params["kd"] == "True")
    assert cache == ["built", "reused"]
    assert {r.data.tags.get("kdtune.teacher_cache") for r in trials if r.data.params["kd"] == "False"} == {"off"}
    # the YAML and the resolved grid are artifacts of the parent
    names = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"sweep.yaml", "grid.json"} <= names


def test_one_teacher_trained_once_for_the_whole_grid(env, first_run):
    _, teachers = client_runs(env, "teacher")
    assert len(teachers) == 1
    assert len(list((env["store"] / "teachers").glob("*/teacher.json"))) == 1


def test_saved_student_reloads_and_reproduces_the_logged_test_f1(env, first_run, shared_data):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdtune.config import load_sweep
    from kdtune.training.inputs import build_inputs, load_splits
    from kdtune.training.loop import evaluate

    client, runs = first_run
    run = next(r for r in runs if r.data.tags.get("kdtune.kind") == "trial" and r.data.params["init"] == "teacher"
               and r.data.params["kd"] == "True")
    folder = client.download_artifacts(run.info.run_id, "student", str(env["root"] / "download"))
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    trial = next(t for t in load_sweep(env["sweep"]).trials if t.config_hash == run.data.tags["kdtune.config_hash"])
    inputs = build_inputs(load_splits("tsm", str(shared_data)), tok, trial)
    scores = evaluate(model, inputs.test.loader, torch.device("cpu"), "fp32", inputs.test.languages)
    assert scores["macro_f1"] == pytest.approx(run.data.metrics["test_macro_f1"], abs=1e-9)
    assert scores["micro_f1"] == pytest.approx(run.data.metrics["test_micro_f1"], abs=1e-9)


def test_rerun_skips_finished_trials_and_reattaches_to_the_parent(env, first_run, capsys):
    _, before = first_run
    assert run_cli(env) == 0
    out = capsys.readouterr().out
    assert "4 already ended (skipped), 0 to run" in out
    _, after = client_runs(env)
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)


SECOND = ("--set", "name=tsm-second", "--set", "grid.init=[base]", "--set", "grid.kd=[true]", "--set", "fixed.epochs=1")


@pytest.fixture(scope="module")
def second_run(env, first_run):  # noqa: ARG001
    assert run_cli(env, *SECOND) == 0


def test_a_second_sweep_reuses_the_teacher_and_records_set_overrides(env, second_run):
    client, runs = client_runs(env)
    teachers = [r for r in runs if r.data.tags.get("kdtune.kind") == "teacher"]
    assert len(teachers) == 1  # reused from the first sweep's store
    second = [r for r in runs if r.data.tags.get("kdtune.sweep") == "tsm-second" and r.data.tags.get("kdtune.kind") == "trial"]
    assert len(second) == 1 and second[0].info.status == "FINISHED"
    assert second[0].data.params["epochs"] == "1.0" and second[0].data.params["init"] == "base"


def test_force_supersedes_the_finished_run_and_trains_the_trial_again_in_a_new_run(env, second_run, capsys):
    def second_runs():
        return [r for r in client_runs(env, "trial")[1] if r.data.tags.get("kdtune.sweep") == "tsm-second"]

    (old,) = second_runs()
    assert run_cli(env, *SECOND, "--force") == 0
    assert "0 already ended (skipped), 1 to run" in capsys.readouterr().out
    runs = {r.info.run_id: r for r in second_runs()}
    assert len(runs) == 2 and old.info.run_id in runs
    superseded = runs.pop(old.info.run_id)
    assert superseded.info.status == "KILLED" and superseded.data.tags["kdtune.superseded"] == "--force"
    assert superseded.info.end_time > old.info.end_time  # ended again, by the plan
    (new,) = runs.values()
    assert new.info.status == "FINISHED" and new.data.tags["kdtune.attempts"] == "1"
    assert new.data.tags["kdtune.config_hash"] == old.data.tags["kdtune.config_hash"]
    assert "kdtune.superseded" not in new.data.tags and "test_macro_f1" in new.data.metrics


def test_the_report_reads_what_the_sweep_tracked(env, first_run, tmp_path):
    """The contract between the tracker and the report: Table 2 from the real runs of the sweep."""
    import csv
    import json

    from kdtune.cli import main

    _, runs = first_run
    trials = [r for r in runs if r.data.tags.get("kdtune.kind") == "trial"]
    out = tmp_path / "report"
    assert main(["report", "--experiment", "kdtune-test", "--tracking-uri", env["uri"], "--out", str(out),
                 "--format", "csv", "--no-log-artifacts"]) == 0
    with open(out / "table2.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["dataset"] == "tsm"]
    for r in trials:  # one seed per cell: the cell is that run's test F1, in percent
        setting = "KD" if r.data.params["kd"] == "True" else "NON-KD"
        (cell,) = [c for c in rows if c["init"] == r.data.params["init"] and c["setting"] == setting
                   and c["hidden"] == r.data.params["hidden"]]
        assert cell["n"] == "1" and float(cell["mean"]) == pytest.approx(100 * r.data.metrics["test_micro_f1"], abs=1e-6)
    (teacher,) = [c for c in rows if c["init"] == "teacher_model" and c["setting"] == "NON-KD"]
    assert float(teacher["mean"]) == pytest.approx(100 * trials[0].data.metrics["teacher_test_micro_f1"], abs=1e-6)
    # teachers.csv: the sweep's one teacher, its best validation score as teachers.train wrote it
    (info,) = [json.loads(p.read_text()) for p in (env["store"] / "teachers").glob("*/teacher.json")]
    with open(out / "teachers.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["teacher_key"] == info["key"] and row["best_seed"] == str(info["best_seed"])
    assert float(row["best_val"]) == pytest.approx(info["best_val"], abs=1e-6)


def test_the_demo_sweep_file_runs_end_to_end(env, tmp_path):
    """sweeps/demo.yaml as shipped (pretrained MiniLM, packaged MASSIVE sample), shortened to 2 steps
    and en-US alone (a fifth of the evaluation rows; the README runs it whole)."""
    from mlflow.tracking import MlflowClient

    from kdtune.cli import main

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main(["sweep", str(Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"),
                 "--tracking-uri", uri, "--storage", str(tmp_path / "store"),
                 "--set", "fixed.max_steps=2", "--set", "fixed.teacher_max_steps=2", "--set", "fixed.languages=en-US"])
    assert code == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("kdtune-demo")
    parent = client.search_runs([exp.experiment_id], "tags.`kdtune.kind` = 'sweep'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    assert len(parent) == 1 and len(children) == 6
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {(r.data.params["init"], r.data.params["kd"]) for r in children} == {
        (i, k) for i in ("teacher", "base", "scratch") for k in ("True", "False")}
    assert all("test_macro_f1" in r.data.metrics and "teacher_test_macro_f1" in r.data.metrics for r in children)
    assert {(r.data.params["dataset"], r.data.params["data_dir"], r.data.params["base_model"]) for r in children} == {
        ("massive", "kdtune:sample", "preset:minilm")}
    assert all(set(r.data.metrics) >= {"test_macro_f1/en-US"} and "test_macro_f1/de-DE" not in r.data.metrics
               for r in children)
    teacher = client.search_runs([exp.experiment_id], "tags.`kdtune.kind` = 'teacher'")
    assert len(teacher) == 1 and teacher[0].info.status == "FINISHED"


def test_the_driver_shows_teacher_progress_while_it_waits(env):
    from kdtune.config import load_sweep
    from kdtune.sweep.teachers import train_teachers
    from kdtune.training.teacher_store import is_complete, teacher_path
    from kdtune.tracking.runs import Tracker

    # A teacher the store lacks (other max steps). Its task posts every step line (no throttle)
    # and its last one before it returns, so what the driver shows depends on events, not speed.
    spec = load_sweep(env["sweep"], ["fixed.teacher_max_steps=40", "fixed.teacher_eval_steps=20"])
    said: list[str] = []
    train_teachers(spec.trials, env["store"], Tracker.open(env["uri"], spec.experiment), spec, said.append,
                   progress_every_s=0.2, post_every_s=0)
    key = spec.trials[0].teacher_key
    assert is_complete(teacher_path(env["store"], key))
    progress = [line for line in said if line.startswith(f"  teacher {key} seed 1: step ")]
    steps = [int(line.split(": step ")[1].split("/")[0]) for line in progress]
    assert steps and steps == sorted(set(steps)) and steps[-1] == 40, said  # the last step is always shown
    assert all(step % 5 == 0 for step in steps)  # log steps (log_steps 5)
    assert all(line.split("/")[1].startswith("40, train loss") for line in progress)
    assert "last val micro-F1" in progress[-1]  # evaluated at step 20 (and 40, after the line)
    assert said[-1].startswith(f"  teacher {key}: best val micro_f1 ")



def test_an_exact_copy_student_logs_zero_attention_loss_through_a_sweep(env, tmp_path):
    """docs/fidelity.md: attention maps are taken before dropout. A student identical to its
    teacher's first layer (same width, no hidden dropout; attention dropout at 0.1), in train
    mode, logs train_loss_att 0 for both targets (later layers' maps legitimately differ under
    attention dropout: tests/test_fidelity.py); a half-width KD student logs the learned W."""
    from mlflow.tracking import MlflowClient

    from kdtune.cli import main

    sweep = tmp_path / "copy.yaml"
    sweep.write_text(textwrap.dedent("""
        name: exact-copy
        tracking: {experiment: kdtune-fidelity}
        fixed: {dataset: synthetic, base_model: preset:micro, init: teacher, kd: true, max_steps: 1, log_steps: 1,
                eval_steps: 1, batch_size: 16, max_length: 32, teacher_max_steps: 20, teacher_batch_size: 32,
                teacher_eval_steps: 20, hidden_dropout: 0.0, layers: 1, layer_map: [0]}
        grid:
          att_target: [probs, scores]
          hidden: [null, 16]
        resources: {cpu: 1}
    """))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["sweep", str(sweep), "--tracking-uri", uri, "--storage", str(tmp_path / "store")]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("kdtune-fidelity")
    runs = client.search_runs([exp.experiment_id], "tags.`kdtune.kind` = 'trial'")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        assert {"test_macro_f1", "test_micro_f1", "majority_test_micro_f1", "best_val_micro_f1"} <= set(r.data.metrics)
        if r.data.params["hidden"] == "None":  # the exact copy
            assert r.data.params["hidden_match_used"] == "identity"
            assert r.data.metrics["train_loss_att"] < 1e-10, r.data.params["att_target"]
        else:
            assert r.data.params["hidden_match"] == "linear" and r.data.params["hidden_match_used"] == "linear"
            assert r.data.metrics["train_loss_att"] > 1e-6
