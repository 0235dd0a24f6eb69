"""The report's computed verdicts (kdtune/report/claims.py) on run records with known outcomes.

Each case is built so that one verdict is right: a clear win, a cell near chance, a tie, a
reversed order, copy-only above or at chance, a shrinking gap. The statistics are checked against
an independent computation (the permutation count of the exact test, the unpooled SE formula).
"""

from __future__ import annotations

import csv
import itertools
import math
import statistics

import pytest

from kdtune.report import build_report
from kdtune.report.build import records_from_runs_csv
from kdtune.report.claims import claims
from kdtune.report.figures import fraction_curves
from kdtune.report.records import project
from kdtune.report.tables import all_tables
from kdtune.tracking.query import TrialRecord

MAJORITY = 0.07  # MASSIVE's majority class, micro-F1

_ids = itertools.count()


def runs(scores: list[float], majority: float = MAJORITY, teacher: float = 0.7, **params) -> list[TrialRecord]:
    """One FINISHED run per seed with these test micro-F1 scores (percent); `teacher` and `majority`
    are their teacher's and the majority class's scores on the same test rows (fractions)."""
    base = {"dataset": "massive", "init": "teacher", "layers": "6", "hidden": "384", "kd": "False",
            "train_partition": "all", "eval_partition": "all", "teacher_partition": "all", "fraction": "1.0",
            "epochs": "30", "metric": "micro_f1"}
    out = []
    for seed, score in enumerate(scores, start=1):
        i = next(_ids)
        p = {**base, **{k: str(v) for k, v in params.items()}, "seed": str(seed)}
        out.append(TrialRecord(f"run{i}", f"r{i}", "x", "FINISHED", start_time=i, params=p,
                               metrics={"test_micro_f1": score / 100, "majority_test_micro_f1": majority,
                                        "teacher_test_micro_f1": teacher}))
    return out


def judged(records: list[TrialRecord]) -> dict[tuple[str, str], object]:
    used = project(records, "micro_f1")
    return {(c.finding, c.where): c for c in claims(all_tables(used), fraction_curves(used))}


@pytest.fixture(scope="module")
def table2_claims():
    records = (
        runs([60, 61, 62], init="teacher") + runs([40, 41, 42], init="base")  # a clear win
        + runs([7.5, 8.0, 7.8], init="scratch")  # within 2 points of chance (7)
        + runs([60.5, 61.5, 59.9], init="teacher", kd=True)  # a tie with NON-KD
        + runs([30, 31, 32], init="base", kd=True)  # KD far below NON-KD: the paper's order reversed
    )
    return judged(records)


def test_a_clear_win_is_reproduced_with_the_independent_statistics(table2_claims):
    c = table2_claims[("from-teacher > from-base", "Table 2, massive, h384, NON-KD")]
    assert c.verdict == "reproduced" and c.wins == "9/9"
    assert c.diff == pytest.approx(20.0)
    assert c.se == pytest.approx(math.sqrt(statistics.variance([60, 61, 62]) / 3 + statistics.variance([40, 41, 42]) / 3))
    # exact test: of the C(6, 3) = 20 ways to split six scores in two, one puts all of A on top
    assert c.p == pytest.approx(1 / math.comb(6, 3))
    assert c.paper_diff == pytest.approx(81.18 - 80.37) and c.size == "larger"


def test_a_cell_near_chance_gets_no_verdict(table2_claims):
    c = table2_claims[("from-base > from-scratch", "Table 2, massive, h384, NON-KD")]
    assert c.verdict == "no verdict" and "chance" in c.why and c.chance == pytest.approx(7.0)
    assert c.wins == "9/9"  # a clean win all the same: near chance, it says nothing


def test_a_tie_is_not_reproduced(table2_claims):
    c = table2_claims[("KD helps from-teacher", "Table 2, massive, h384")]
    assert c.verdict == "not reproduced" and c.p > 0.05


def test_a_reversed_order_differs(table2_claims):
    c = table2_claims[("KD helps from-base", "Table 2, massive, h384")]
    assert c.verdict == "differs" and c.wins == "0/9" and c.diff == pytest.approx(-10.0)


def test_two_seeds_a_side_cannot_reach_a_verdict():
    c = judged(runs([60, 61], init="teacher") + runs([40, 41], init="base"))[
        ("from-teacher > from-base", "Table 2, massive, h384, NON-KD")]
    assert c.verdict == "no verdict" and "too few seeds" in c.why  # 1/C(4, 2) = 0.17 > 0.05


def test_copy_only_above_chance_on_massive_and_at_chance_on_tsm_as_the_paper_says():
    records = (runs([62, 63, 61], kd=True) + runs([30.0], kd=True, epochs=0)
               + runs([60, 61, 62], kd=True, dataset="tsm", majority=0.3333)
               + runs([34.0], kd=True, epochs=0, dataset="tsm", majority=0.3333))
    got = judged(records)
    assert got[("copy-only above chance", "Table 5, massive")].verdict == "reproduced"
    assert got[("copy-only at chance", "Table 5, tsm")].verdict == "reproduced"  # 34.0 is within 2 of 33.3
    records[-1] = runs([49.0], kd=True, epochs=0, dataset="tsm", majority=0.3333)[0]
    assert judged(records)[("copy-only at chance", "Table 5, tsm")].verdict == "differs"
    # a teacher at chance leaves its copy nothing to keep: no verdict either way
    records[-1] = runs([34.0], kd=True, epochs=0, dataset="tsm", majority=0.3333, teacher=0.34)[0]
    c = judged(records)[("copy-only at chance", "Table 5, tsm")]
    assert c.verdict == "no verdict" and "teacher" in c.why


def test_the_gap_shrinking_with_data_is_read_from_figure_2():
    def point(fraction, teacher, base):
        return runs(teacher, kd=True, fraction=fraction) + runs(base, kd=True, init="base", fraction=fraction)

    shrinking = point(0.1, [50, 51, 52], [20, 21, 22]) + point(1.0, [80, 81, 82], [75, 76, 77])
    c = judged(shrinking)[("the from-teacher - from-base gap shrinks with data", "Figure 2, massive")]
    assert c.verdict == "reproduced" and c.diff == pytest.approx(30.0 - 5.0)
    growing = point(0.1, [50, 51, 52], [45, 46, 47]) + point(1.0, [80, 81, 82], [55, 56, 57])
    assert judged(growing)[("the from-teacher - from-base gap shrinks with data", "Figure 2, massive")].verdict == "differs"


def test_the_report_writes_the_section_and_claims_csv_and_reads_its_own_runs_csv(tmp_path):
    records = runs([60, 61, 62], init="teacher") + runs([40, 41, 42], init="base")
    build_report(records, tmp_path / "a", formats=("md", "csv"), metric="micro_f1")
    text = (tmp_path / "a" / "report.md").read_text()
    assert "## Claims" in text and "Verdicts use test micro-F1" in text and "**reproduced**" in text
    rows = list(csv.DictReader((tmp_path / "a" / "claims.csv").open()))
    assert [(r["finding"], r["verdict"]) for r in rows] == [("from-teacher > from-base", "reproduced")]
    # a report made again from its runs.csv alone gives the same claims
    again = build_report(records_from_runs_csv(tmp_path / "a" / "runs.csv"), tmp_path / "b", formats=("csv",))
    assert [(c.finding, c.where, c.verdict, round(c.diff, 6)) for c in again.claims] == [
        (r["finding"], r["where"], r["verdict"], round(float(r["diff"]), 6)) for r in rows]


def test_report_from_a_runs_csv_refuses_to_overwrite_the_folder_it_reads(tmp_path, capsys):
    from kdtune.cli import main

    build_report(runs([60, 61, 62]) + runs([40, 41, 42], init="base"), tmp_path / "a", formats=("md", "csv"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert main(["report", "--runs-csv", str(tmp_path / "a" / "runs.csv"), "--out", str(tmp_path / "a")]) == 2
    assert "--out:" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before  # nothing touched
    assert main(["report", "--runs-csv", str(tmp_path / "nope.csv")]) == 2
    assert main(["report", "--runs-csv", str(tmp_path / "a" / "runs.csv"), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "claims.csv").is_file()


def test_where_the_paper_reports_a_loss_the_direction_wins_and_size_follow_it():
    """Table 3, tsm, English-trained from-teacher: the paper's KD - NON-KD is 53.35 - 54.36 = -1.01."""
    def table3(kd_scores, plain_scores):
        common = dict(dataset="tsm", majority=0.3333, train_partition="english", eval_partition="unseen",
                      teacher_partition="seen")
        return judged(runs(kd_scores, kd=True, **common) + runs(plain_scores, kd=False, **common))

    key = ("KD hurts from-teacher", "Table 3, tsm, trained on english")
    hurts = table3([40, 41, 42], [50, 51, 52])[key]
    assert (hurts.verdict, hurts.wins, hurts.size) == ("reproduced", "9/9", "larger")  # -10 against -1.01
    assert hurts.p == pytest.approx(1 / 20) and hurts.paper_diff == pytest.approx(-1.01)
    helps = table3([50, 51, 52], [40, 41, 42])[key]
    assert (helps.verdict, helps.wins, helps.size) == ("differs", "0/9", "")
