"""Searches without Ray Tune running: `space:`/`search:` parsing, seeded draws, the dry run, bad input,
the Optuna plan from MLflow's runs, the per-grid-point searcher, the parent run's summary, the
config read back from params, and the report's search section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdtune.cli import main
from kdtune.config import load_sweep, make_trial, study_key
from kdtune.errors import UsageError
from kdtune.sweep.plan import PastRun, plan_search

SEARCH = """
name: s
fixed: {dataset: synthetic, base_model: preset:micro, epochs: 1}
grid: {init: [teacher, base]}
space:
  lr: {loguniform: [1.0e-5, 1.0e-3]}
  warmup_ratio: {uniform: [0.0, 0.2]}
  eval_steps: {quniform: [10, 40, 10]}
  seed: {randint: [1, 4]}
  w_att: {choice: [0.5, 1, 2]}
search: {algorithm: random, num_samples: 4, seed: 7}
resources: {cpu: 1}
"""


def sweep_file(tmp_path: Path, text: str = SEARCH) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def hashes(spec) -> list[str]:
    return [t.config_hash for t in spec.trials]


def test_random_draws_are_seeded_crossed_with_the_grid_and_the_same_in_every_process(tmp_path):
    path = sweep_file(tmp_path)
    spec = load_sweep(path)
    assert len(spec.trials) == 4 * 2 and spec.planned == 8 and len(set(hashes(spec))) == 8
    code = f"from kdtune.config import load_sweep; print([t.config_hash for t in load_sweep({str(path)!r}).trials])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(other.replace("'", '"')) == hashes(spec)  # draw i is the same on every run
    # draw-major: draw i at every grid point, the same values at each (paired comparisons)
    keys = spec.search.keys
    for i in range(4):
        teacher, base = spec.trials[2 * i], spec.trials[2 * i + 1]
        assert (teacher.init, base.init) == ("teacher", "base")
        assert [getattr(teacher, k) for k in keys] == [getattr(base, k) for k in keys]
    draws = [tuple(getattr(t, k) for k in keys) for t in spec.trials[::2]]
    assert len(set(draws)) == 4
    for t in spec.trials:
        assert 1e-5 <= t.lr < 1e-3 and 0 <= t.warmup_ratio < 0.2 and t.w_att in (0.5, 1.0, 2.0)
        assert isinstance(t.eval_steps, int) and t.eval_steps in (10, 20, 30, 40)
        assert t.seed in (1, 2, 3)  # randint: hi exclusive
    # more samples keep the earlier draws (so a search can be extended); another seed draws anew
    assert hashes(load_sweep(path, ["search.num_samples=6"]))[:8] == hashes(spec)
    assert not set(hashes(load_sweep(path, ["search.seed=8"]))) & set(hashes(spec))


def test_a_sampled_trial_is_hashed_as_if_its_values_were_fixed(tmp_path):
    spec = load_sweep(sweep_file(tmp_path))
    t = spec.trials[3]
    fixed = {"dataset": "synthetic", "base_model": "preset:micro", "epochs": 1, "init": t.init,
             **{k: getattr(t, k) for k in spec.search.keys}}
    assert make_trial(fixed).config_hash == t.config_hash
    # the study key ignores the sampled fields: both draws at a grid point share it, the points differ
    keys = spec.search.keys
    assert study_key(spec.trials[0], keys) == study_key(spec.trials[2], keys) != study_key(spec.trials[1], keys)


def test_a_grid_sweep_is_unchanged_by_the_search_machinery(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, "grid: {seed: [1, 2]}\nfixed: {epochs: 3}\n"))
    assert spec.search is None and spec.trials == spec.points and spec.probes == [] and spec.planned == 2
    assert hashes(spec) == [make_trial({"seed": s, "epochs": 3}).config_hash for s in (1, 2)]


def test_dry_run_of_a_random_and_an_optuna_search(tmp_path, capsys):
    path = sweep_file(tmp_path)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep s: 8 trials, ")
    lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 8 and all("lr=" in line and "w_att=" in line for line in lines)
    assert "space: lr ~ loguniform(1e-05, 0.001)" in out
    assert main(["sweep", str(path), "--dry-run", "--set", "search.algorithm=optuna", "--set", "search.num_samples=5",
                 "--set", "space.eval_steps={quniform: [10, 40, 10]}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep s: 10 trials, 0 teacher(s) before the trials, others trained by the trials")
    assert out.count("  grid point ") == 2 and "x 5 trials, suggested by TPE" in out
    assert not [line for line in out.splitlines() if line.strip()[:1].isdigit()]


# --- bad input: exit 2, one line naming the key, nothing written --------------------------------

GOOD = """
name: bad
fixed: {dataset: synthetic, base_model: preset:micro, epochs: 1}
space: {lr: {loguniform: [1.0e-5, 1.0e-3]}}
search: {algorithm: random, num_samples: 2}
resources: {cpu: 1}
"""
BAD = {
    "unknown distribution": ((), ("space.lr={normal: [0, 1]}",), "space.lr: unknown distribution 'normal'"),
    "lo >= hi": ((), ("space.lr={uniform: [0.1, 0.01]}",), "space.lr: uniform: lo must be < hi"),
    "lo == hi": ((), ("space.seed={randint: [3, 3]}",), "space.seed: randint: lo must be < hi"),
    "loguniform lo <= 0": ((), ("space.lr={loguniform: [0, 0.1]}",), "space.lr: loguniform: lo must be > 0"),
    "not a trial field": ((), ("space.lrr={uniform: [0, 1]}",), "space.lrr: unknown trial field (did you mean 'lr'?)"),
    "also a grid axis": ((), ("grid.lr=[0.001]",), "space.lr: also a grid: axis"),
    "num_samples < 1": ((), ("search.num_samples=0",), "search.num_samples: must be >= 1, got 0"),
    "num_samples missing": ((), ("search={algorithm: random}",), "search.num_samples: required"),
    "unknown algorithm": ((), ("search.algorithm=grid",), "search.algorithm: 'grid' not allowed; allowed: random, optuna"),
    "unknown search key": ((), ("search.samples=3",), "search.samples: unknown key (did you mean 'num_samples'?)"),
    "optuna: choice of lists": ((), ("search.algorithm=optuna", "space.layer_map={choice: [[0, 1], paper]}"),
                                "space.layer_map: optuna cannot take choice of [0, 1]"),
    "optuna: quniform off q": ((), ("search.algorithm=optuna", "space.eval_steps={quniform: [5, 50, 10]}"),
                               "space.eval_steps: optuna cannot take quniform"),
    "sampled value out of range": ((), ("space.fraction={uniform: [0.5, 1.5]}",), "space.fraction: 1.5 out of range"),
    "sampled choice not allowed": ((), ("space.init={choice: [teacher, copy]}",), "space.init: 'copy' not allowed"),
    "real draws for an integer": ((), ("space.batch_size={uniform: [8, 64]}",), "space.batch_size: uniform draws real"),
    "numbers for a string field": ((), ("space.init={uniform: [0, 1]}",), "space.init: uniform draws numbers"),
    "quniform q <= 0": ((), ("space.lr={quniform: [0.1, 0.5, 0]}",), "space.lr: quniform: q must be > 0"),
    "distribution args": ((), ("space.lr={uniform: [0.1]}",), "space.lr: uniform: expected [lo, hi]"),
    "startup_trials for random": ((), ("search.startup_trials=3",), "search.startup_trials: only for algorithm: optuna"),
    "override sets a sampled field": (("overrides: [{match: {seed: 1}, set: {lr: 0.1}}]\n",), (),
                                      "overrides[0].set.lr: lr is sampled"),
    "search without space": (("",), ("space=null",), "search: nothing to sample"),
    "scheduler option of another type": (("scheduler: {type: median, max_t: 3}\n",), (),
                                         "scheduler.max_t: not an option of median; allowed: grace_period"),
    "unknown scheduler": (("scheduler: {type: pbt}\n",), (), "scheduler.type: 'pbt' not supported; allowed: asha, hyperband, median"),
    "hyperband under max_concurrent": (("scheduler: {type: hyperband}\nmax_concurrent: 1\n",), (),
                                       "scheduler.type: hyperband needs every trial created up front"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_search_input_exits_2_with_one_line_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    (extra, sets, needle) = BAD[name]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    Path("s.yaml").write_text(GOOD + "".join(extra))
    argv = ["sweep", "s.yaml"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdtune: error: s.yaml: ") and needle in lines[0], err
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]


def test_randint_is_validated_at_its_upper_end_less_one(tmp_path):
    """randint's hi is exclusive (as in Ray): [2, 3] only draws 2, so a two-entry layer_map fits;
    [2, 4] may draw 3, which the same layer_map cannot serve."""
    text = ("name: s\nfixed: {dataset: synthetic, base_model: preset:micro, layer_map: [0, 1]}\n"
            "space: {layers: {randint: [2, %d]}}\nsearch: {algorithm: random, num_samples: 3, seed: 1}\n")
    spec = load_sweep(sweep_file(tmp_path, text % 3))
    assert {t.layers for t in spec.trials} == {2}
    with pytest.raises(UsageError, match="layer_map: lists 2 teacher layers but layers is 3"):
        load_sweep(sweep_file(tmp_path, text % 4))


# --- the Optuna plan: what each grid point's searcher is told, resumes, and may still suggest -----

def run(run_id, h, status, study="A", score=None, early=False, superseded=False, lr=0.1):
    return PastRun(run_id, h, status, study=study, sampled={"lr": lr}, score=score, early_stopped=early,
                   superseded=superseded)


RUNS = [
    run("f1", "h1", "FINISHED", score=0.5, lr=0.1),
    run("s1", "h2", "KILLED", score=0.2, early=True, lr=0.2),  # stopped by the scheduler: ended
    run("x1", "h3", "FAILED", lr=0.3),
    run("r1", "h4", "RUNNING", lr=0.4),  # its driver was SIGKILLed: resume it
    run("k1", "h5", "KILLED", lr=0.5),  # interrupted: resume it
    run("o1", "h6", "FINISHED", score=0.9, superseded=True, lr=0.6),  # --force replaced it: ignored
    run("b1", "h7", "FINISHED", study="B", score=0.3, lr=0.7),
    run("f0", "h1", "KILLED", lr=0.1),  # an older interrupted run of a hash that finished later
]


def test_plan_search_tells_ended_trials_resumes_unfinished_ones_and_never_exceeds_num_samples():
    plan = plan_search(["A", "B"], RUNS, 6)
    a, b = plan.studies["A"], plan.studies["B"]
    assert sorted(a.told, key=str) == [({"lr": 0.1}, 0.5), ({"lr": 0.2}, 0.2)] and a.failed == [{"lr": 0.3}]
    assert a.resume == [{"lr": 0.4}, {"lr": 0.5}] and a.ended == 3 and a.left == 3  # 6 - 3, resumes included
    assert set(a.known) == {"h1", "h2", "h3"} and plan.failed == 1
    assert b.told == [({"lr": 0.7}, 0.3)] and b.left == 5 and plan.left == 8
    assert plan.kill == {"r1": {"kdtune.orphaned": "driver stopped"}}
    full = plan_search(["A"], RUNS, 3)  # 3 ended already: nothing to suggest, nothing to resume
    assert full.studies["A"].left == 0 and full.studies["A"].resume == []
    assert plan_search(["A"], RUNS, 4).studies["A"].resume == [{"lr": 0.4}]  # one slot left


def test_plan_search_rerun_failed_and_force():
    again = plan_search(["A"], RUNS, 6, rerun_failed=True).studies["A"]
    assert {"lr": 0.3} in again.resume and again.failed == [] and again.ended == 2 and again.left == 4
    forced = plan_search(["A"], RUNS, 6, force=True)
    assert forced.studies["A"].told == [] and forced.studies["A"].left == 6
    assert forced.kill["f1"] == {"kdtune.superseded": "--force"} and "o1" not in forced.kill


# --- the per-grid-point searcher (Ray's OptunaSearch; no Ray Tune run) ----------------------------

def test_a_study_suggests_resumes_first_and_never_a_config_that_ran(tmp_path):
    from kdtune.sweep.plan import StudyPlan
    from kdtune.sweep.search import PerPoint, Study

    spec = load_sweep(sweep_file(tmp_path, GOOD), ["space={w_att: {choice: [0.0, 1.0, 2.0]}}",
                                                   "search={algorithm: optuna, num_samples: 4, startup_trials: 1}"])
    (point,) = spec.points
    ran = make_trial({**point.to_dict(), "w_att": 1.0})
    plan = StudyPlan(told=[({"w_att": 1.0}, 0.4)], resume=[{"w_att": 2.0}], known={ran.config_hash: 0.4}, left=3, ended=1)
    said = []
    searcher = PerPoint([Study(spec.search, point, plan, "val_macro_f1")], "val_macro_f1", said.append)
    first = searcher.suggest("t1")
    assert first["trial"]["w_att"] == 2.0  # the unfinished trial, with its config hash (its checkpoint)
    second = searcher.suggest("t2")
    assert second["trial"]["w_att"] == 0.0  # 1.0 ran already, 2.0 runs now: only 0.0 is new
    searcher.on_trial_complete("t2", {"val_macro_f1": 0.1})
    assert searcher.suggest("t3") == "FINISHED"  # the space is used up: it ends one short, says so
    assert searcher.studies[0].short == 1 and searcher.total_left == 0 and "used up" in said[0]
    assert len(set(searcher.suggested)) == 2 and ran.config_hash not in searcher.suggested


# --- the parent run's summary, and the config read back from params ------------------------------

class FakeRun:
    def __init__(self, run_id, status, val=None, test=None, tags=None, params=None, start=0):
        class Info:
            pass

        class Data:
            pass

        self.info, self.data = Info(), Data()
        self.info.run_id, self.info.status, self.info.run_name, self.info.start_time = run_id, status, f"n/{run_id}", start
        self.data.tags, self.data.params = tags or {}, params or {}
        self.data.metrics = {} if val is None else {"best_val_micro_f1": val, "test_micro_f1": test}


def test_summary_counts_finished_failed_and_stopped_and_ranks_by_validation(tmp_path):
    from kdtune.sweep.best import ranked, summary_markdown

    spec = load_sweep(sweep_file(tmp_path))
    runs = [FakeRun("aaa", "FINISHED", 0.4, 0.9, params={"lr": "0.0001", "init": "base"}, start=1),
            FakeRun("bbb", "FINISHED", 0.6, 0.1, params={"lr": "0.0003", "init": "teacher"}, start=2),
            FakeRun("ccc", "FAILED"), FakeRun("ddd", "KILLED", tags={"kdtune.stopped": "early stopped by the scheduler"}),
            FakeRun("eee", "KILLED", tags={"kdtune.interrupted": "x", "kdtune.stopped": "x"})]
    assert [r.info.run_id for r in ranked(runs, "micro_f1")] == ["bbb", "aaa"]  # by validation, not test
    text = summary_markdown(spec, runs)
    assert "random search, 4 samples x 2 grid point(s)" in text
    assert "Trials: 2 finished, 1 failed, 1 stopped, 1 interrupted" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| # | run | val | test | init | lr | warmup_ratio | eval_steps | seed | w_att |")
    assert table[1].startswith("| 1 | n/bbb (`bbb`) | 0.6000 | 0.1000 | teacher | 0.0003 |") and len(table) == 3


def test_the_summary_names_a_sampled_run_without_its_values_even_with_a_slash_in_one(tmp_path):
    from kdtune.config import sampled_values, search_name
    from kdtune.sweep.best import summary_markdown

    spec = load_sweep(sweep_file(tmp_path))
    keys = ["lr", "data_dir"]
    trial = make_trial({"dataset": "massive", "lr": 0.000123456, "data_dir": "/data/massive-v1/x"})
    run = FakeRun("aaa", "FINISHED", 0.5, 0.5, tags={"kdtune.sampled": json.dumps(sampled_values(trial, keys))})
    run.info.run_name = search_name(trial, keys)
    assert run.info.run_name.endswith("/lr=0.0001235,data_dir=/data/massive-v1/x")
    row = [line for line in summary_markdown(spec, [run]).splitlines() if line.startswith("| 1 ")][0]
    assert row.startswith(f"| 1 | {trial.run_name} (`aaa`) |")


def test_a_config_read_back_from_its_params_has_the_runs_hash(tmp_path):
    from kdtune.config.params import fixed_block, values_from_params
    from kdtune.tracking.runs import _param_value

    trial = make_trial({"dataset": "massive", "languages": ["en-US", "de-DE"], "layers": 2, "layer_map": [1, 3],
                        "teacher_seeds": [1, 2], "lr": 0.00012345678901234, "hidden_dropout": 0.0,
                        "teacher_warmup_ratio": 0.1, "kd": False, "data_dir": "kdtune:sample", "epochs": 3})
    params = {k: _param_value(v) for k, v in trial.to_dict().items()}  # as the tracker logs them
    again = make_trial(values_from_params(params))
    assert again == trial and again.config_hash == trial.config_hash
    import yaml

    block = yaml.safe_load(fixed_block(trial))["fixed"]
    assert make_trial(block) == trial and "w_att" not in block and block["lr"] == 0.00012345678901234
    # written as a sweep author would: a language list, a whole number without ".0"
    assert block["languages"] == ["en-US", "de-DE"] and block["epochs"] == 3 and type(block["epochs"]) is int


# --- the report's search section -----------------------------------------------------------------

def test_the_report_has_a_search_section_with_top_trials_and_a_figure(tmp_path):
    from kdtune.report import build_report
    from kdtune.report.figures import have_matplotlib
    from kdtune.tracking.query import TrialRecord

    space = json.dumps({"lr": {"loguniform": [1e-5, 1e-3]}, "w_att": {"choice": [0.5, 1.0]}})
    records = [TrialRecord(f"run{i}", f"name{i}", "exp", "FINISHED", params={"dataset": "synthetic", "init": "teacher"},
                           metrics={"best_val_micro_f1": v, "test_micro_f1": v / 2},
                           tags={"kdtune.sampled": json.dumps({"lr": lr, "w_att": w}), "kdtune.space": space,
                                 "kdtune.sweep": "tune"})
               for i, (v, lr, w) in enumerate([(0.2, 1e-4, 0.5), (0.5, 3e-4, 1.0), (0.1, 2e-5, 0.5)])]
    result = build_report(records, tmp_path, formats=("md", "csv", "png") if have_matplotlib() else ("md", "csv"))
    text = (tmp_path / "report.md").read_text()
    section = text.split("## Search: tune", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == "| # | run | val micro_f1 | test micro_f1 | lr | w_att |"
    assert rows[1].startswith("| 1 | `run1` | 0.5000 | 0.2500 | 0.0003 | 1 |") and len(rows) == 4
    assert (tmp_path / "search_tune.csv").read_text().splitlines()[1].startswith("1,run1,name1,0.5")
    if have_matplotlib():
        assert (tmp_path / "search_tune.png") in result.files and "![tune: validation" in section
