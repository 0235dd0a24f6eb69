"""kdtune.report on plain records (no MLflow): paper numbers, cell statistics, selections, output.

The paper numbers are checked against the paper's own text line by line; cell statistics against
statistics.mean / statistics.stdev computed here.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from kdtune.errors import UsageError
from kdtune.report import build_report
from kdtune.report.figures import mean_curve, moving_average, smoothing_window
from kdtune.report.paper import format_paper, load_paper_numbers
from kdtune.report.render import cell_markdown
from kdtune.report.records import Cell, project, varying_params
from kdtune.report.tables import table2, table3, table4, table5
from kdtune.tracking.query import TrialRecord

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "privileged-students-arxiv-2406.16524.txt"
INIT = {"teacher": "from-teacher", "base": "from-base", "scratch": "from-scratch"}
PART = {"seen": "seen lang", "unseen": "unseen lang", "english": "english"}


def _pct(value) -> str:
    return f"{format_paper(value)}%"


def _paper_segment(lines: list[str], caption: str, first: str) -> list[str]:
    end = next(i for i, line in enumerate(lines) if line.startswith(caption))
    start = max(i for i in range(end) if lines[i] == first)
    return lines[start:end]


@pytest.fixture(scope="module")
def paper_lines() -> list[str]:
    if not PAPER.is_file():
        pytest.skip(f"paper text not found at {PAPER}")
    return [line.strip() for line in PAPER.read_text(encoding="utf-8").splitlines()]


def test_paper_tables_2_and_3_match_the_text(paper_lines):
    data = load_paper_numbers()
    t2 = data["table2"]
    expected = ["from-base (Teacher)", str(t2["teacher"]["layers"]), str(t2["teacher"]["hidden"]),
                _pct(t2["teacher"]["massive"]), "-", _pct(t2["teacher"]["tsm"]), "-"]
    for init, layers, hidden, *values in t2["students"]:
        expected += [INIT[init], str(layers), str(hidden)] + [_pct(v) for v in values]
    assert _paper_segment(paper_lines, "Table 2:", "from-base (Teacher)") == expected

    t3 = data["table3"]
    expected = ["from-base (Teacher)", PART[t3["teacher"]["train"]], PART[t3["teacher"]["test"]],
                _pct(t3["teacher"]["massive"]), "-", _pct(t3["teacher"]["tsm"]), "-"]
    for init, train, test, *values in t3["students"]:
        expected += [INIT[init], PART[train], PART[test]] + [_pct(v) for v in values]
    assert _paper_segment(paper_lines, "Table 3:", "from-base (Teacher)") == expected


def test_paper_tables_4_and_5_match_the_text(paper_lines):
    data = load_paper_numbers()
    t4 = data["table4"]
    expected = ["from-base (Teacher)", _pct(t4["teacher"]["massive"]), _pct(t4["teacher"]["tsm"])]
    for init, *values in t4["students"]:
        expected += [INIT[init]] + [_pct(v) for v in values]
    assert _paper_segment(paper_lines, "Table 4:", "from-base (Teacher)") == expected

    labels = {"with_finetune": "With Finetune", "without_finetune": "Without Finetune", "random": "Random Score"}
    expected = ["Training Method", "massive", "tsm"]
    for key, *values in data["table5"]["rows"]:
        expected += [labels[key]] + [_pct(v) for v in values]
    assert _paper_segment(paper_lines, "Table 5:", "Training Method") == expected


def test_report_library_does_not_import_mlflow():
    code = "import sys, kdtune.report, kdtune.commands.report, kdtune.tracking.query; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cell_statistics_and_text():
    values = (71.2, 69.9, 73.05)
    cell = Cell(values=values, paper=70.10)
    assert cell.mean == pytest.approx(statistics.mean(values))
    assert cell.std == pytest.approx(statistics.stdev(values))
    assert cell.diff == pytest.approx(statistics.mean(values) - 70.10)
    assert cell_markdown(Cell(values=values)) == f"**{statistics.mean(values):.2f}** ± {statistics.stdev(values):.2f} (n=3)"
    assert cell_markdown(Cell(values=(50.0,))) == "**50.00** (n=1)" and Cell(values=(50.0,)).std is None
    assert cell_markdown(Cell(paper=7)) == "*missing*<br><sub>paper 7</sub>"
    assert cell_markdown(Cell(applicable=False)) == "–"


_counter = iter(range(10**6))


def rec(status: str = "FINISHED", test_f1: float = 0.5, metrics: dict | None = None, **params) -> TrialRecord:
    """A trial record as MLflow gives it (current metric names), projected onto macro-F1 as the
    report does before any table is built."""
    base = {"dataset": "massive", "init": "teacher", "layers": "6", "hidden": "768", "kd": "True",
            "train_partition": "all", "eval_partition": "all", "teacher_partition": "all", "fraction": "1.0",
            "seed": "1", "epochs": "30"}
    base.update({k: str(v) for k, v in params.items()})
    i = next(_counter)
    record = TrialRecord(run_id=f"run{i}", run_name=f"r{i}", experiment="x", status=status, start_time=i,
                         params=base, metrics={"test_macro_f1": test_f1, **(metrics or {})})
    return project([record], "macro_f1")[0]


def test_table2_full_scale_shapes_match_paper_rows_and_synthetic_column():
    runs = [
        rec(test_f1=0.81, seed=1), rec(test_f1=0.83, seed=2),
        rec(init="scratch", hidden=384, kd=False, test_f1=0.70),
        rec(dataset="synthetic", init="base", test_f1=0.9),
    ]
    table = table2(runs)
    assert [c.label for c in table.columns] == [
        "massive NON-KD", "massive KD", "tsm NON-KD", "tsm KD", "synthetic NON-KD", "synthetic KD"]
    cell = table.cell(("teacher", "6", "768"), "massive", True)
    assert cell.n == 2 and cell.mean == pytest.approx(82.0) and cell.paper == 81.63
    assert table.cell(("scratch", "6", "384"), "massive", False).paper == 75.27
    assert table.cell(("base", "6", "768"), "synthetic", True).paper is None  # no paper dataset
    assert table.cell(("base", "6", "384"), "tsm", True).missing  # paper row nobody ran
    # 1 teacher row + 6 paper rows, none duplicated
    assert len(table.rows) == 7 and len({r.keys for r in table.rows}) == 7


def test_unset_layers_hidden_and_teacher_partition_as_the_sweep_logs_them():
    # The demo sweep leaves layers/hidden/teacher_partition unset: logged as "None".
    runs = [rec(layers="None", hidden="None", teacher_partition="None", kd=kd, init=init, test_f1=0.5 + 0.1 * kd,
                epochs="0.5", dataset="synthetic")
            for init in ("teacher", "scratch") for kd in (False, True)]
    table = table2(runs)
    assert table.n_runs == 4
    row = next(r for r in table.rows if r.keys == ("teacher", "None", "None"))
    assert row.labels == ("from-teacher", "½ teacher", "= teacher")
    assert row.cells[("synthetic", True)].mean == pytest.approx(60.0)
    assert row.cells[("massive", True)].missing and row.cells[("massive", True)].paper == 81.63
    half = [r for r in table.rows if r.labels[2] == "½ teacher"]
    assert [r.labels[0] for r in half] == ["from-teacher", "from-base", "from-scratch"]
    assert all(c.missing for r in half for c in r.cells.values())
    assert any("left hidden / layers unset" in n for n in table.notes)
    # teacher_partition "None" resolves to the training partition: seen -> seen is Table 3's teacher
    t3 = table3([rec(train_partition="seen", eval_partition="unseen", teacher_partition="None")])
    assert t3.n_runs == 1


def test_duplicate_seeds_keep_the_latest_run_and_mixed_settings_are_noted():
    runs = [rec(seed=1, test_f1=0.1), rec(seed=1, test_f1=0.6), rec(seed=2, test_f1=0.7, layer_map="first"),
            rec(status="FAILED", seed=3, test_f1=0.0)]
    table = table2([r for r in runs if r.status == "FINISHED"])
    cell = table.cell(("teacher", "6", "768"), "massive", True)
    assert cell.values == pytest.approx((60.0, 70.0))
    notes = " ".join(table.notes)
    assert "repeated a seed" in notes and "layer_map" in notes


def test_a_field_a_run_did_not_log_counts_as_its_default_not_as_a_mixed_setting():
    """A run from before a field existed ran as the field's default: beside a run that logged the
    default it is not "mixed"; beside a run that set another value it is."""
    older, logged_default, other = rec(seed=1), rec(seed=2, teacher_warmup_ratio=None), rec(seed=3, teacher_warmup_ratio=0.2)
    assert "teacher_warmup_ratio" not in older.params and logged_default.params["teacher_warmup_ratio"] == "None"
    assert varying_params([older, logged_default]) == set()
    assert varying_params([older, other]) == {"teacher_warmup_ratio"}
    assert varying_params([logged_default, other]) == {"teacher_warmup_ratio"}
    table = table2([older, logged_default])
    assert not [n for n in table.notes if "differ in more than the seed" in n]


def test_tables_3_4_5_select_by_partition_and_epochs():
    runs = [
        rec(train_partition="seen", eval_partition="unseen", teacher_partition="seen", test_f1=0.6,
            metrics={"teacher_test_macro_f1": 0.66}),
        rec(train_partition="english", eval_partition="unseen", teacher_partition="english", init="base", test_f1=0.4,
            metrics={"teacher_test_macro_f1": 0.55}),
        rec(train_partition="english", eval_partition="unseen", teacher_partition="english", kd=False, test_f1=0.3),
        rec(epochs=0, test_f1=0.35), rec(epochs=0, kd=False, seed=2, test_f1=0.37), rec(epochs=0, hidden=384, test_f1=0.1),
    ]
    t3 = table3(runs)
    assert t3.n_runs == 1 and t3.cell(("teacher", "seen", "unseen"), "massive", True).mean == pytest.approx(60.0)
    assert t3.rows[0].cells[("massive", False)].mean == pytest.approx(66.0)
    t4 = table4(runs)  # the NON-KD english run is not Table 4
    assert t4.n_runs == 1 and t4.cell(("base",), "massive", None).mean == pytest.approx(40.0)
    assert t4.rows[0].cells[("massive", None)].paper == 56.42
    t5 = table5(runs)
    without = t5.cell(("without_finetune",), "massive", None)
    assert without.values == pytest.approx((35.0, 37.0)) and without.paper == 38.05  # half width left out
    assert t5.cell(("with_finetune",), "massive", None).missing
    # these runs predate the majority baseline: the random row is empty, the paper's number stands
    assert t5.cell(("random",), "tsm", None).missing and t5.cell(("random",), "tsm", None).paper == 33.33


def test_build_report_without_finished_runs(tmp_path):
    result = build_report([rec(status="FAILED"), rec(status="KILLED")], tmp_path, formats=("md", "csv"))
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "FINISHED (used): 0" in text and "1 FAILED, 1 KILLED" in text
    assert "## Tables without runs" in text and text.count("no FINISHED run matches") == 4
    assert not list(tmp_path.glob("*.csv")) and [p.name for p in result.files] == ["report.md"]


def test_build_report_removes_stale_own_files_only(tmp_path):
    (tmp_path / "figure2.png").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    build_report([rec(seed=1), rec(seed=2, test_f1=0.7)], tmp_path, formats=("csv",))
    assert not (tmp_path / "figure2.png").exists() and (tmp_path / "notes.txt").exists()
    with open(tmp_path / "table2.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    row = next(r for r in rows if r["init"] == "teacher" and r["hidden"] == "768" and r["setting"] == "KD"
               and r["dataset"] == "massive")
    assert float(row["mean"]) == pytest.approx(60.0) and float(row["std"]) == pytest.approx(statistics.stdev([50, 70]))


def test_smoothing_and_mean_curve():
    values = [float(v * v % 7) for v in range(50)]
    window = 4
    expected = [statistics.fmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]
    assert moving_average(values, window) == pytest.approx(expected)
    assert smoothing_window(100) == 1 and smoothing_window(3000) == 50
    steps, mean, low, high = mean_curve([[(1, 2.0), (2, 4.0)], [(1, 4.0), (3, 1.0)]])
    assert steps == [1, 2, 3] and mean == [3.0, 4.0, 1.0] and low == [2.0, 4.0, 1.0] and high == [4.0, 4.0, 1.0]


def test_format_and_filter_errors():
    from kdtune.commands.report import parse_formats
    from kdtune.report.languages import parse_filter

    assert parse_formats("png, md") == ("png", "md")
    with pytest.raises(UsageError, match="allowed: md, csv, png"):
        parse_formats("md,html")
    assert parse_filter("train_partition=english", [rec()])["train_partition"] == "english"
    with pytest.raises(UsageError, match="key=value"):
        parse_filter("kd", [rec()])


def test_png_skipped_with_a_warning_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    runs = [rec(fraction=f, seed=s, init=i, test_f1=0.5) for f in (0.1, 1.0) for s in (1, 2) for i in ("teacher", "base")]
    result = build_report(runs, tmp_path, formats=("md", "png"), history=lambda ids, key: {})
    assert len(result.warnings) == 1 and "kdtune[report]" in result.warnings[0]
    assert not list(tmp_path.glob("*.png"))
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "![" not in text and "matplotlib is missing" in text


def test_tables_use_the_fraction_most_runs_use_and_note_a_reduced_dataset():
    # A scaled-down reproduction: tables at 10% of a 6-locale subset, Figure 2 points below it.
    sub = "en-US,de-DE,ru-RU,it-IT,nl-NL,pl-PL"
    # Table runs at 10 % (two widths x two seeds), Figure 2 runs at 5 % and at 20 % (one cell each).
    runs = [rec(fraction=0.1, languages=sub, test_f1=0.6 if hidden == 768 else 0.5, seed=s, hidden=hidden)
            for hidden in (768, 384) for s in (1, 2)]
    runs += [rec(fraction=f, languages=sub, test_f1=score, seed=s) for f, score in ((0.05, 0.4), (0.2, 0.9))
             for s in (1, 2)]
    runs.append(rec(dataset="tsm", fraction=0.25, test_f1=0.5))
    t2 = table2(runs)
    assert t2.n_runs == 5  # the 4 massive runs at 10 % (the fraction most runs use), 1 tsm run at 25 %
    assert t2.cell(("teacher", "6", "768"), "massive", True).values == pytest.approx((60.0, 60.0))
    assert t2.cell(("teacher", "6", "768"), "tsm", True).mean == pytest.approx(50.0)
    notes = " ".join(t2.notes)
    assert t2.cell(("teacher", "6", "384"), "massive", True).values == pytest.approx((50.0, 50.0))
    assert f"massive: languages {sub}; training data 10% of those rows." in notes
    assert "tsm: training data 25% of those rows." in notes
    t5 = table5(runs + [rec(epochs=0, fraction=0.1, languages=sub, test_f1=0.3)])
    assert t5.cell(("with_finetune",), "massive", None).values == pytest.approx((60.0, 60.0))
    # the paper's own sweeps: fraction 1.0 (a tie here) wins over fig2's smaller one, and no note
    full = table2([rec(fraction=1.0, test_f1=0.8), rec(fraction=0.2, test_f1=0.1)])
    assert full.cell(("teacher", "6", "768"), "massive", True).values == pytest.approx((80.0,))
    assert not any("training data" in n for n in full.notes)


def test_projection_reads_both_metrics_and_stores_written_before_them():
    from kdtune.report.records import LANG_SCORE, MAJORITY_SCORE, SCORE, TEACHER_SCORE

    new = TrialRecord(run_id="a", run_name="a", experiment="x", status="FINISHED", metrics={
        "test_macro_f1": 0.4, "test_micro_f1": 0.7, "teacher_test_macro_f1": 0.5, "teacher_test_micro_f1": 0.8,
        "majority_test_macro_f1": 0.01, "majority_test_micro_f1": 0.07, "test_macro_f1/de-DE": 0.3,
        "test_micro_f1/de-DE": 0.6})
    old = TrialRecord(run_id="b", run_name="b", experiment="x", status="FINISHED", metrics={
        "test_f1": 0.4, "test_accuracy": 0.7, "teacher_test_f1": 0.5, "teacher_test_accuracy": 0.8, "test_f1/de-DE": 0.3})
    for metric, want in (("macro_f1", (0.4, 0.5, 0.3)), ("micro_f1", (0.7, 0.8, 0.6))):
        got = project([new], metric)[0].metrics
        assert (got[SCORE], got[TEACHER_SCORE], got[LANG_SCORE + "de-DE"]) == want
        assert got[MAJORITY_SCORE] == {"macro_f1": 0.01, "micro_f1": 0.07}[metric]
    legacy_macro = project([old], "macro_f1")[0].metrics
    assert (legacy_macro[SCORE], legacy_macro[TEACHER_SCORE], legacy_macro[LANG_SCORE + "de-DE"]) == (0.4, 0.5, 0.3)
    legacy_micro = project([old], "micro_f1")[0].metrics
    assert (legacy_micro[SCORE], legacy_micro[TEACHER_SCORE]) == (0.7, 0.8)
    assert LANG_SCORE + "de-DE" not in legacy_micro  # old stores logged per-language macro-F1 only


def test_table5_random_row_is_the_logged_majority_baseline_in_the_chosen_metric():
    runs = [rec(epochs=0, test_f1=0.35, metrics={"majority_test_macro_f1": 0.0044, "majority_test_micro_f1": 0.0703}),
            rec(test_f1=0.8, seed=2, metrics={"majority_test_macro_f1": 0.0044, "majority_test_micro_f1": 0.0703})]
    cell = table5(runs).cell(("random",), "massive", None)
    assert cell.values == pytest.approx((0.44,)) and cell.paper == 7
    micro = [project([r], "micro_f1")[0] for r in runs]
    assert table5(micro).cell(("random",), "massive", None).values == pytest.approx((7.03,))
