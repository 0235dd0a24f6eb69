"""Sweep YAML: grid expansion, overrides, --set, config hashes, and the paper sweep files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdtune.cli import main
from kdtune.config import TrialConfig, load_sweep, make_trial, stable_hash
from kdtune.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
PAPER_COUNTS = {"table2": 72, "table3": 72, "table4": 18, "table5": 2, "fig2": 45,
                "tiny-table2": 36, "tiny-table3": 36, "tiny-table5": 2, "tiny-fig2": 27,
                "minilm-table2": 72, "minilm-table3": 72, "minilm-table4": 18, "minilm-table5": 2,
                "minilm-fig2": 27, "demo": 6,
                "search-demo": 10, "table2-kd-weights": 60}  # searches: num_samples x grid points


def test_every_sweep_file_is_checked_here():
    assert {p.stem for p in (REPO / "sweeps").glob("*.yaml")} == set(PAPER_COUNTS)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name,count", sorted(PAPER_COUNTS.items()))
def test_paper_sweeps_expand_to_the_papers_trial_counts(name, count, capsys):
    assert main(["sweep", str(REPO / "sweeps" / f"{name}.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"sweep {name}: {count} trials")
    # one line per trial, each with a distinct hash; an Optuna search: one line per grid point
    # (its study), whose trials TPE suggests as it runs
    hashes = [line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()]
    studies = [line.split()[4] for line in out.splitlines() if line.startswith("  grid point ")]
    if "suggested by TPE" in out:
        samples = int(out.split("search: optuna, ")[1].split(" samples")[0])
        assert not hashes and len(studies) * samples == count and len(set(studies)) == len(studies)
    else:
        assert len(hashes) == count == len(set(hashes))


def test_table2_grid_is_the_cross_product_with_dataset_overrides():
    spec = load_sweep(REPO / "sweeps" / "table2.yaml")
    combos = {(t.dataset, t.init, t.hidden, t.kd, t.seed) for t in spec.trials}
    assert len(combos) == 2 * 3 * 2 * 2 * 3
    assert {t.eval_steps for t in spec.trials if t.dataset == "massive"} == {5000}
    assert {t.eval_steps for t in spec.trials if t.dataset == "tsm"} == {500}
    assert all(t.layers == 6 and t.train_partition == "all" for t in spec.trials)
    assert len(spec.teacher_trials) == 2  # one teacher per dataset, shared by 36 students each


def test_set_overrides_values_and_changes_the_hash(tmp_path):
    path = write(tmp_path, "grid: {seed: [1, 2]}\nfixed: {epochs: 3}\n")
    base = load_sweep(path)
    over = load_sweep(path, ["fixed.epochs=1", "grid.seed=[5]", "fixed.layer_map=[0, 2]", "fixed.layers=2"])
    assert [t.epochs for t in base.trials] == [3.0, 3.0]
    assert [(t.seed, t.epochs, t.layer_map) for t in over.trials] == [(5, 1.0, (0, 2))]
    assert over.trials[0].config_hash != base.trials[0].config_hash


def test_config_hash_is_stable_across_processes_and_ignores_where_data_lives():
    t = make_trial({"dataset": "tsm", "init": "base", "seed": 3})
    code = "from kdtune.config import make_trial; print(make_trial({'dataset':'tsm','init':'base','seed':3}).config_hash)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == t.config_hash
    assert make_trial({"dataset": "tsm", "init": "base", "seed": 3, "data_dir": "/x"}).config_hash == t.config_hash
    assert make_trial({"dataset": "tsm", "init": "base", "seed": 4}).config_hash != t.config_hash
    # teacher key: students that differ only in student fields share a teacher
    assert make_trial({"dataset": "tsm", "init": "scratch", "seed": 9}).teacher_key == t.teacher_key
    assert make_trial({"dataset": "tsm", "teacher_partition": "seen"}).teacher_key != t.teacher_key


def test_defaults_follow_the_paper():
    t = TrialConfig()
    assert (t.epochs, t.lr, t.batch_size, t.layer_map, t.init, t.kd) == (30, 5e-5, 8, "paper", "teacher", True)
    assert (t.w_att, t.w_hid, t.w_emb, t.w_pred, t.w_clf) == (1, 1, 1, 1, 1)


def test_overrides_apply_in_order_and_duplicates_collapse(tmp_path):
    path = write(tmp_path, """
grid: {init: [teacher, base, scratch], seed: [1, 2]}
overrides:
  - {match: {init: base}, set: {lr: 1.0e-4, eval_steps: 7}}
  - {match: {init: base, seed: 2}, set: {lr: 2.0e-4}}   # later wins where both match
  - {match: {lr: 2.0e-4}, set: {warmup_ratio: 0.1}}    # matches what an earlier override set
  - {match: {init: scratch}, set: {seed: 1}}           # scratch seed 2 becomes scratch seed 1
""")
    spec = load_sweep(path)
    got = [(t.init, t.seed, t.lr, t.eval_steps, t.warmup_ratio) for t in spec.trials]
    assert got == [  # grid order, the collapsed duplicate once
        ("teacher", 1, 5e-5, 5000, 0.0), ("teacher", 2, 5e-5, 5000, 0.0),
        ("base", 1, 1e-4, 7, 0.0), ("base", 2, 2e-4, 7, 0.1),
        ("scratch", 1, 5e-5, 5000, 0.0),
    ]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("grid: {inti: [teacher]}\n", "grid.inti: unknown trial field (did you mean 'init'?)"),
        ("fixed: {init: copy}\n", "fixed.init: 'copy' not allowed; allowed: teacher, base, scratch"),
        ("fixed: {fraction: 1.5}\n", "fraction: 1.5 out of range"),
        ("fixed: {kd: yes please}\n", "kd: expected true or false"),
        ("schedular: {type: asha}\n", "schedular: unknown key (did you mean 'scheduler'?)"),
        ("fixed: {layer_map: zigzag}\n", "layer_map: 'zigzag' not allowed"),
        ("grid: {seed: 3}\n", "grid.seed: expected a non-empty list"),
        ("resources: {gpu: -1}\n", "resources"),
        ("fixed: [1, 2]\n", "fixed: expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        ("fixed: {lr: 0}\n", "lr: learning rates must be > 0"),
        ("fixed: {teacher_lr: -1.0e-5}\n", "lr: learning rates must be > 0"),
        ("scheduler: {type: asha, grace_period: 5, max_t: 3}\n", "scheduler.max_t: must be >= grace_period (5)"),
    ],
)
def test_bad_yaml_is_one_line_naming_file_and_key(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_sweep(path)
    msg = str(err.value)
    assert needle in msg and str(path) in msg and "\n" not in msg


def test_languages_field_narrows_the_data_and_keeps_old_hashes(tmp_path):
    base = make_trial({"dataset": "massive", "seed": 2})
    same = make_trial({"dataset": "massive", "seed": 2, "languages": "all"})
    sub = make_trial({"dataset": "massive", "seed": 2, "languages": ["en-US", "de-DE"]})
    assert sub.languages == "en-US,de-DE"  # a YAML list becomes a readable comma list
    # Trials from before the field existed keep their hash: the hash of the same dict without it.
    # (the teacher_* overrides came later still: at their default None they stay out too)
    later = ("languages", "teacher_weight_decay", "teacher_warmup_ratio", "teacher_max_grad_norm")
    unhashed = ("data_dir", "save_model", "compile", "teacher_cache", "used_vocab", *later)
    legacy = {k: v for k, v in base.to_dict().items() if k not in unhashed}
    assert same.config_hash == base.config_hash == stable_hash(legacy)
    assert sub.config_hash != base.config_hash
    assert sub.teacher_key != base.teacher_key and "languages" not in base.teacher_fields()
    path = write(tmp_path, "fixed: {dataset: massive, languages: [en-US, de-DE], eval_partition: unseen}\n")
    with pytest.raises(UsageError, match="eval_partition: partition 'unseen' of massive has no languages within"):
        preflight_partitions(path)
    path = write(tmp_path, "fixed: {dataset: tsm, languages: [english, klingon]}\n")
    with pytest.raises(UsageError, match="languages: unknown partition or language 'klingon'"):
        preflight_partitions(path)


def preflight_partitions(path):
    """The sweep's language checks (the part of preflight that needs no store or Ray)."""
    from kdtune.sweep.preflight import preflight

    spec = load_sweep(path)
    preflight(spec, store=Path(path).parent, tracking_uri="sqlite:///" + str(Path(path).parent / "x.db"), address=None)
