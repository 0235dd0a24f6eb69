"""The sweep's closing table (kdtune/sweep/outcome.py print_summary) on fake MLflow runs: each
trial's score beside its teacher's and chance, what its seeds can support, and the runs page."""

from __future__ import annotations

from types import SimpleNamespace

from kdtune.sweep.outcome import print_summary


def fake_run(name: str, seed: int, test: float, init: str = "teacher") -> SimpleNamespace:
    metrics = {"best_val_micro_f1": test + 0.01, "test_micro_f1": test, "teacher_test_micro_f1": 0.41,
               "majority_test_micro_f1": 0.0701}
    return SimpleNamespace(info=SimpleNamespace(run_name=name, status="FINISHED"),
                           data=SimpleNamespace(tags={}, metrics=metrics, params={"init": init, "seed": str(seed)}))


def summary(runs, uri="sqlite:////x/mlflow.db") -> list[str]:
    tracker = SimpleNamespace(uri=uri, experiment_id="7", trial_runs=lambda parent: runs)
    spec = SimpleNamespace(metric="micro_f1", experiment="kdtune-demo")
    said: list[str] = []
    print_summary(tracker, "parent", spec, said.append)
    return said


def test_scores_stand_beside_teacher_and_chance_and_one_seed_orders_nothing():
    said = summary([fake_run("a/teacher/s1", 1, 0.31), fake_run("a/base/s1", 1, 0.12, init="base")])
    header, *rows = [line for line in said if line.strip()][:3]
    assert header.split()[-2:] == ["teacher", "majority"]
    assert rows[0].split()[-4:] == ["0.1300", "0.1200", "0.4100", "0.0701"]  # base sorts first
    assert any("1 seed(s) per setting: too few to order" in line for line in said)
    assert said[-1].endswith("http://127.0.0.1:5000/#/experiments/7/runs") and "mlflow ui --backend-store-uri" in said[-1]


def test_three_seeds_point_to_the_reports_claims_and_a_server_gets_its_own_url():
    runs = [fake_run(f"a/{init}/s{s}", s, 0.3, init=init) for init in ("teacher", "base") for s in (1, 2, 3)]
    said = summary(runs, uri="http://mlflow:5000/")
    assert any("kdtune report --experiment kdtune-demo" in line for line in said)
    assert not any("too few" in line for line in said)
    assert said[-1] == "Browse the runs: http://mlflow:5000/#/experiments/7/runs"
