"""`kdtune report` end to end against a real sqlite MLflow store with known metric values.

The experiment is written with MlflowClient the way the sweep writes it (a sweep parent run, trial
child runs with string params, final metrics, train_loss histories, a teacher run, and FAILED /
RUNNING / KILLED runs that must not count). Expected cells are computed here, independently of
kdtune.report, with statistics.mean / statistics.stdev over the specs.
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kdtune.cli import main
from kdtune.tracking.runs import Tracker
from kdtune.tracking.teachers import log_teacher

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

EXPERIMENT = "report-test"
TEACHERS = [  # two trained teachers as kdtune.training.teacher_store.train returns them (a third run never finishes)
    {"key": "a" * 64, "fields": {"dataset": "massive", "partition": "all", "languages": "all", "epochs": 2.0,
                                 "lr": 3e-4, "seeds": [1, 2], "metric": "macro_f1"},
     "metric": "macro_f1", "best_seed": 2, "best_val": 0.7913,
     "seeds": [{"seed": 1, "best_val": 0.7712, "train_loss": [(1, 4.1), (2, 3.9)]},
               {"seed": 2, "best_val": 0.7913, "train_loss": [(1, 4.0)]}], "train_seconds": 754.0},
    {"key": "b" * 64, "fields": {"dataset": "massive", "partition": "seen", "languages": "all", "epochs": 4.0,
                                 "lr": 3e-4, "seeds": [1], "metric": "micro_f1"},
     "metric": "micro_f1", "best_seed": 1, "best_val": 0.6511,
     "seeds": [{"seed": 1, "best_val": 0.6511, "train_loss": []}], "train_seconds": 90.0},
]
SEED_OFFSET = {1: 0.011, 2: -0.007, 3: 0.023, 4: 0.0}
INIT_BASE = {"teacher": 0.70, "base": 0.64, "scratch": 0.41}
LANGS = {"en-US": 0.10, "de-DE": 0.04, "am-ET": -0.12, "sw-KE": -0.20}
# per-init language effect: copying from the teacher helps am-ET most
LANG_INIT = {("teacher", "am-ET"): 0.15, ("teacher", "sw-KE"): 0.05}


@dataclass
class Spec:
    dataset: str
    init: str
    kd: bool
    seed: int
    test_f1: float
    layers: int = 2
    hidden: int = 32
    train: str = "all"
    eval: str = "all"
    teacher: str = "None"  # unset, as the sweep logs it: the teacher trains on train_partition
    fraction: float = 1.0
    epochs: int = 3
    teacher_f1: float | None = None
    status: str = "FINISHED"
    langs: bool = False
    loss: bool = False
    params: dict = field(default_factory=dict)


def _f1(init: str, kd: bool, seed: int, shift: float = 0.0) -> float:
    return round(INIT_BASE[init] + (0.025 if kd else 0.0) + SEED_OFFSET[seed] + shift, 6)


def make_specs() -> list[Spec]:
    specs: list[Spec] = []
    # Table 2, massive, full width (32): every init x KD x 3 seeds, except scratch NON-KD with 2 seeds.
    for init in ("teacher", "base", "scratch"):
        for kd in (False, True):
            seeds = (1, 2) if (init, kd) == ("scratch", False) else (1, 2, 3)
            for seed in seeds:
                specs.append(Spec("massive", init, kd, seed, _f1(init, kd, seed), teacher_f1=0.7913,
                                  langs=kd, loss=kd))
    # Table 2, massive, half width (16): teacher KD 2 seeds, scratch NON-KD 1 seed; base missing.
    for seed in (1, 2):
        specs.append(Spec("massive", "teacher", True, seed, _f1("teacher", True, seed, -0.05), hidden=16, teacher_f1=0.7913))
    specs.append(Spec("massive", "scratch", False, 1, _f1("scratch", False, 1, -0.02), hidden=16, teacher_f1=0.7913))
    # Table 2, tsm, full width: teacher and base x KD x 2 seeds; scratch missing.
    for init in ("teacher", "base"):
        for kd in (False, True):
            for seed in (1, 2):
                specs.append(Spec("tsm", init, kd, seed, _f1(init, kd, seed, -0.1), teacher_f1=0.6988))
    # Runs that must not count.
    specs.append(Spec("massive", "teacher", True, 4, 0.05, teacher_f1=0.7913, status="FAILED"))
    specs.append(Spec("massive", "base", True, 4, 0.01, teacher_f1=0.7913, status="RUNNING"))
    specs.append(Spec("tsm", "teacher", False, 3, 0.02, teacher_f1=0.6988, status="KILLED"))
    # Figure 2/3: massive KD full width at 1% and 10% of the training data.
    for fraction, shift in ((0.01, -0.3), (0.1, -0.1)):
        for init in ("teacher", "base", "scratch"):
            for seed in (1, 2):
                specs.append(Spec("massive", init, True, seed, _f1(init, True, seed, shift * (1.2 if init == "scratch" else 1.0)),
                                  fraction=fraction, teacher_f1=0.7913, loss=True))
    # Table 3: teacher on seen, test on unseen; students on seen (teacher/base x KD x 2 seeds) and
    # on english (teacher KD, 3 seeds); scratch and base-english missing.
    for init in ("teacher", "base"):
        for kd in (False, True):
            for seed in (1, 2):
                specs.append(Spec("massive", init, kd, seed, _f1(init, kd, seed, -0.05), train="seen", eval="unseen",
                                  teacher="seen", teacher_f1=0.6511))
    for seed in (1, 2, 3):
        specs.append(Spec("massive", "teacher", True, seed, _f1("teacher", True, seed, -0.2), train="english", eval="unseen",
                          teacher="seen", teacher_f1=0.6511))
    # Table 5: copy only (epochs 0), full width; a half-width copy that must be left out.
    for seed in (1, 2):
        specs.append(Spec("massive", "teacher", True, seed, round(0.30 + 0.01 * seed, 6), epochs=0, teacher_f1=0.7913))
    specs.append(Spec("massive", "teacher", True, 1, 0.2, epochs=0, hidden=16, teacher_f1=0.7913))
    return specs


def _params(spec: Spec) -> dict[str, str]:
    return {
        "dataset": spec.dataset, "base_model": "tiny-preset", "init": spec.init, "layers": str(spec.layers),
        "hidden": str(spec.hidden), "kd": str(spec.kd), "train_partition": spec.train,
        "eval_partition": spec.eval, "teacher_partition": spec.teacher, "fraction": str(spec.fraction),
        "seed": str(spec.seed), "epochs": str(float(spec.epochs)),  # logged as the sweep does: "3.0", "0.0"
        "batch_size": "8", "layer_map": "paper", "lr": "5e-05",
    }


def _loss_history(spec: Spec, n: int = 40) -> list[tuple[int, float]]:
    rate = {"teacher": 0.15, "base": 0.08, "scratch": 0.03}[spec.init] * (1 + spec.fraction)
    start = {"teacher": 1.2, "base": 2.0, "scratch": 3.0}[spec.init]
    return [(step, start * (2.718281828 ** (-rate * step)) + 0.05 * spec.seed) for step in range(1, n + 1)]


def write_experiment(uri: str, artifacts: Path, specs: list[Spec]) -> dict:
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    now = int(time.time() * 1000)
    sweep = client.create_run(exp_id, run_name="sweep", tags={"kdtune.kind": "sweep", "kdtune.sweep": "test"})
    client.set_terminated(sweep.info.run_id, "FINISHED")
    tracker = Tracker.open(uri, EXPERIMENT)
    for info in TEACHERS:  # logged the way the sweep logs a trained teacher
        log_teacher(tracker, info["key"], info, artifacts, "test")
    unfinished = client.create_run(exp_id, run_name="teacher/massive/english/crashed", tags={"kdtune.kind": "teacher"})
    client.log_batch(unfinished.info.run_id, metrics=[Metric("best_val_macro_f1", 0.5, now, 0)],
                     params=[Param("dataset", "massive"), Param("partition", "english")])
    for i, spec in enumerate(specs):
        name = f"{spec.dataset}/{spec.init}/h{spec.hidden}/{'kd' if spec.kd else 'nokd'}/{spec.train}/f{spec.fraction}/s{spec.seed}"
        run = client.create_run(exp_id, run_name=name, start_time=now + i,
                                tags={"kdtune.kind": "trial", "mlflow.parentRunId": sweep.info.run_id})
        metrics = [Metric("test_f1", spec.test_f1, now, 0), Metric("test_accuracy", spec.test_f1 + 0.01, now, 0),
                   Metric("best_val_f1", spec.test_f1 + 0.02, now, 0)]
        if spec.teacher_f1 is not None:
            metrics.append(Metric("teacher_test_f1", spec.teacher_f1, now, 0))
        if spec.langs:
            for lang, shift in LANGS.items():
                value = spec.test_f1 + shift + LANG_INIT.get((spec.init, lang), 0.0)
                metrics.append(Metric(f"test_f1/{lang}", round(value, 6), now, 0))
        if spec.loss:
            metrics += [Metric("train_loss", v, now, s) for s, v in _loss_history(spec)]
        client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in _params(spec).items()])
        if spec.status != "RUNNING":
            client.set_terminated(run.info.run_id, spec.status)
    client.create_experiment("empty-experiment", artifact_location=(artifacts / "empty").as_uri())
    return {"sweep_run_id": sweep.info.run_id}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    specs = make_specs()
    info = write_experiment(uri, root / "artifacts", specs)
    return {"uri": uri, "root": root, "specs": specs, **info}


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-out") / "rep"
    started = time.monotonic()
    # The store holds macro-F1 under its legacy names (test_f1, per language too): compare that one.
    rc = main(["report", "--experiment", EXPERIMENT, "--tracking-uri", store["uri"], "--out", str(out),
               "--metric", "macro_f1"])
    return {"rc": rc, "out": out, "seconds": time.monotonic() - started}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _expected(specs: list[Spec], **where) -> list[float]:
    """Percent test F1 of FINISHED specs matching every field in `where` (independent of kdtune)."""
    return [100 * s.test_f1 for s in specs if s.status == "FINISHED" and all(getattr(s, k) == v for k, v in where.items())]


def _check(row: dict, values: list[float]) -> None:
    assert int(row["n"]) == len(values), row
    if not values:
        assert row["mean"] == "" and row["status"] == "missing", row
        return
    assert float(row["mean"]) == pytest.approx(statistics.mean(values), abs=1e-9), row
    if len(values) > 1:
        assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-9), row
    else:
        assert row["std"] == "", row


def test_teachers_table(report):
    """teachers.csv and the Teachers section list each FINISHED teacher run once, with its own
    selection metric's best validation score (not the students' teacher-test score)."""
    rows = _rows(report["out"] / "teachers.csv")
    assert [r["teacher_key"] for r in rows] == ["a" * 64, "b" * 64]  # sorted by partition; RUNNING one left out
    for row, info in zip(rows, TEACHERS):
        assert float(row["best_val"]) == pytest.approx(info["best_val"])
        assert row["metric"] == info["metric"] and row["best_seed"] == str(info["best_seed"])
        assert row["partition"] == info["fields"]["partition"] and float(row["epochs"]) == info["fields"]["epochs"]
        assert float(row["train_minutes"]) == pytest.approx(info["train_seconds"] / 60, abs=0.05)
    text = (report["out"] / "report.md").read_text()
    section = text.split("## Teachers", 1)[1].split("\n## ", 1)[0]
    assert "| 79.1 | macro_f1 | 12.6 |" in section and "| 65.1 | micro_f1 | 1.5 |" in section
    assert "crashed" not in section and "[teachers.csv](teachers.csv)" in section


def _find(rows: list[dict], **where) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def test_report_exit_code_and_files(report):
    assert report["rc"] == 0
    out = report["out"]
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "table2.csv", "table3.csv", "table5.csv", "figure2.png", "figure2.csv", "figure3.png",
            "languages_massive.png", "languages_massive.csv", "teachers.csv"} <= names
    assert "table4.csv" not in names  # no run matches Table 4
    assert report["seconds"] < 60


def test_table2_cells(report, store):
    rows = _rows(report["out"] / "table2.csv")
    specs = store["specs"]
    for dataset in ("massive", "tsm"):
        for init in ("teacher", "base", "scratch"):
            for kd in (False, True):
                for hidden in (32, 16):
                    values = _expected(specs, dataset=dataset, init=init, kd=kd, hidden=hidden, train="all",
                                       fraction=1.0, epochs=3)
                    setting = "KD" if kd else "NON-KD"
                    matches = [r for r in rows if r["init"] == init and r["hidden"] == str(hidden)
                               and r["dataset"] == dataset and r["setting"] == setting]
                    assert len(matches) == 1, (dataset, init, kd, hidden)
                    _check(matches[0], values)
    # the FAILED (0.05) and RUNNING (0.01) runs did not count: massive teacher KD has seeds 1-3 only
    cell = _find(rows, init="teacher", hidden="32", dataset="massive", setting="KD")
    assert cell["seeds"] == "1;2;3"
    # paper numbers beside cells: full width -> paper's 6 x 768 row, half -> 6 x 384
    assert float(cell["paper"]) == 81.63
    assert float(cell["diff"]) == pytest.approx(statistics.mean(_expected(specs, dataset="massive", init="teacher", kd=True, hidden=32, fraction=1.0, epochs=3, train="all")) - 81.63)
    assert float(_find(rows, init="scratch", hidden="16", dataset="massive", setting="NON-KD")["paper"]) == 75.27
    missing = _find(rows, init="base", hidden="16", dataset="massive", setting="KD")
    assert missing["status"] == "missing" and float(missing["paper"]) == 79.41
    assert _find(rows, init="scratch", hidden="32", dataset="tsm", setting="KD")["status"] == "missing"
    # teacher row: distinct teacher_test_f1 values (one teacher per dataset), KD column not applicable
    teacher = _find(rows, init="teacher_model", dataset="massive", setting="NON-KD")
    assert float(teacher["mean"]) == pytest.approx(79.13) and teacher["n"] == "1" and float(teacher["paper"]) == 80.13
    assert _find(rows, init="teacher_model", dataset="tsm", setting="KD")["status"] == "n/a"


def test_table3_and_table5_cells(report, store):
    specs = store["specs"]
    rows = _rows(report["out"] / "table3.csv")
    for init in ("teacher", "base", "scratch"):
        for train in ("seen", "english"):
            for kd in (False, True):
                values = _expected(specs, dataset="massive", init=init, kd=kd, train=train, eval="unseen", teacher="seen")
                row = _find(rows, init=init, train_partition=train, dataset="massive", setting="KD" if kd else "NON-KD")
                _check(row, values)
    assert float(_find(rows, init="teacher", train_partition="english", dataset="massive", setting="KD")["paper"]) == 59.65
    teacher = _find(rows, init="teacher_model", dataset="massive", setting="NON-KD")
    assert float(teacher["mean"]) == pytest.approx(65.11) and float(teacher["paper"]) == 68.22

    rows = _rows(report["out"] / "table5.csv")
    without = _find(rows, row_label="Without Finetune", dataset="massive")
    _check(without, _expected(specs, dataset="massive", init="teacher", epochs=0, hidden=32))
    assert float(without["paper"]) == 38.05
    with_ft = _find(rows, row_label="With Finetune", dataset="massive")
    _check(with_ft, _expected(specs, dataset="massive", init="teacher", kd=True, hidden=32, train="all", fraction=1.0, epochs=3))
    random_row = _find(rows, row_label="Random Score", dataset="tsm")
    assert random_row["status"] == "missing"  # legacy runs: no majority baseline logged
    assert float(random_row["paper"]) == 33.33
    assert _find(rows, row_label="Without Finetune", dataset="tsm")["status"] == "missing"


def test_markdown(report, store):
    text = (report["out"] / "report.md").read_text(encoding="utf-8")
    assert text.count("## Table 2") == 1 and "## Table 3" in text and "## Table 5" in text
    assert "Table 4" in text and "no FINISHED run matches" in text
    assert "1 FAILED" in text and "1 KILLED" in text and "1 RUNNING" in text
    # header row of Table 2 and a few paper numbers, exactly as printed
    assert "| Model initialization | Layers | Hidden | massive NON-KD | massive KD | tsm NON-KD | tsm KD |" in text
    for number in ("80.13", "81.63", "79.41", "68.22", "38.05", "33.33"):
        assert f"paper {number}" in text
    assert "*missing*<br><sub>paper 79.41</sub>" in text  # from-base half width, massive KD
    values = _expected(store["specs"], dataset="massive", init="teacher", kd=True, hidden=32, train="all", fraction=1.0, epochs=3)
    assert f"**{statistics.mean(values):.2f}** ± {statistics.stdev(values):.2f} (n=3)" in text
    one = _expected(store["specs"], dataset="massive", init="scratch", kd=False, hidden=16)
    assert f"**{one[0]:.2f}** (n=1)" in text
    # Table 3 has no tsm run: its tsm columns are left out of the markdown, with a note
    table3 = text[text.index("## Table 3"):text.index("## Table 5")]
    assert "| massive NON-KD | massive KD |" in table3 and "tsm KD" not in table3
    assert "No runs for tsm in this table" in table3
    for image in ("figure2.png", "figure3.png", "languages_massive.png"):
        assert f"]({image})" in text  # relative links


def test_languages(report, store):
    rows = _rows(report["out"] / "languages_massive.csv")
    specs = [s for s in store["specs"] if s.langs and s.status == "FINISHED"]
    for lang, shift in LANGS.items():
        for init in ("teacher", "base", "scratch"):
            values = [100 * (s.test_f1 + shift + LANG_INIT.get((init, lang), 0.0)) for s in specs if s.init == init]
            row = _find(rows, language=lang, init=init)
            assert int(row["n"]) == len(values) == 3
            assert float(row["mean"]) == pytest.approx(statistics.mean(values), abs=1e-6)
    marked = {r["language"] for r in rows if r["marked"] == "1"}
    assert marked == {"am-ET"}  # the largest teacher-minus-scratch gain by construction


def _check_png(path: Path, min_width: int = 400) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 15_000, (path, len(data))
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[1] >= min_width and pixels.shape[0] >= 300, pixels.shape
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank canvas
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50


def test_pngs_are_real_images(report):
    for name in ("figure2.png", "figure3.png", "languages_massive.png"):
        _check_png(report["out"] / name)


def test_figure2_data(report, store):
    rows = _rows(report["out"] / "figure2.csv")
    specs = store["specs"]
    for fraction in (0.01, 0.1, 1.0):
        for init in ("teacher", "base", "scratch"):
            values = _expected(specs, dataset="massive", init=init, kd=True, hidden=32, train="all", fraction=fraction, epochs=3)
            row = _find(rows, init=init, fraction=str(fraction))
            _check({**row, "status": "ok"}, values)


def test_artifacts_logged_to_sweep_run(report, store):
    client = MlflowClient(tracking_uri=store["uri"])
    names = {Path(a.path).name for a in client.list_artifacts(store["sweep_run_id"], "report")}
    assert {"report.md", "table2.csv", "figure2.png"} <= names


def test_csv_and_md_only(store, tmp_path):
    out = tmp_path / "r"
    rc = main(["report", "--experiment", EXPERIMENT, "--tracking-uri", store["uri"], "--out", str(out),
               "--format", "md,csv", "--no-log-artifacts"])
    assert rc == 0
    assert not list(out.glob("*.png"))
    text = (out / "report.md").read_text(encoding="utf-8")
    assert ".png)" not in text


def _error(capsys, argv: list[str]) -> str:
    started = time.monotonic()
    rc = main(argv)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("kdtune: error: ")
    assert elapsed < 15, elapsed
    return err


def test_unknown_experiment(store, capsys, tmp_path):
    err = _error(capsys, ["report", "--experiment", "nope", "--tracking-uri", store["uri"], "--out", str(tmp_path / "o")])
    assert "unknown experiment 'nope'" in err and EXPERIMENT in err


def test_experiment_without_runs(store, capsys, tmp_path):
    err = _error(capsys, ["report", "--experiment", "empty-experiment", "--tracking-uri", store["uri"], "--out", str(tmp_path / "o")])
    assert "no trial runs" in err


def test_unreachable_server(capsys, tmp_path):
    err = _error(capsys, ["report", "--experiment", EXPERIMENT, "--tracking-uri", "http://127.0.0.1:9", "--out", str(tmp_path / "o")])
    assert "unreachable" in err and "127.0.0.1:9" in err and "connection refused" in err


def test_plain_folder_store_is_refused_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    err = _error(capsys, ["report", "--experiment", EXPERIMENT, "--tracking-uri", str(tmp_path / "mlruns"), "--out", str(tmp_path / "o")])
    assert "cannot read tracking store" in err


def test_missing_sqlite_store_is_not_created(capsys, tmp_path):
    db = tmp_path / "absent" / "mlflow.db"
    err = _error(capsys, ["report", "--experiment", EXPERIMENT, "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "o")])
    assert "no MLflow store" in err and not db.exists()


def test_bad_format_and_language_filter(store, capsys, tmp_path):
    err = _error(capsys, ["report", "--experiment", EXPERIMENT, "--tracking-uri", store["uri"], "--format", "md,pdf"])
    assert "--format" in err and "pdf" in err and "png" in err
    err = _error(capsys, ["report", "--experiment", EXPERIMENT, "--tracking-uri", store["uri"],
                          "--out", str(tmp_path / "o"), "--languages", "colour=blue"])
    assert "--languages" in err and "colour" in err
