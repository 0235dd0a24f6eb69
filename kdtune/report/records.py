"""Plain-record helpers shared by the tables and figures: typed params, selections, cell statistics.

Conventions:
- Records are `kdtune.tracking.query.TrialRecord`s (params are MLflow strings). Typed accessors
  return None for a missing or unparsable value, so a run without a field never matches a filter
  on that field.
- Scores are fractions in [0, 1]; cells hold them in percent. A report compares one metric
  (`macro_f1` or `micro_f1`): `project` puts that metric's values under neutral keys (`SCORE`,
  `TEACHER_SCORE`, `MAJORITY_SCORE`, `LANG_SCORE` + language) once, so the tables, figures and
  language tables never name a metric, and stores written before both F1s were logged (`test_f1`,
  `test_accuracy`, ...) read the same way.
- The sweep logs unset optional fields as the string "None": `teacher_partition` None means the
  student's own `train_partition`; `layers` None means half the teacher's layers and `hidden` None
  the teacher's hidden size (`TEACHER_WIDTH`, wider than any explicit size for sorting).
- `epochs` may be fractional; epochs 0 means the copied student is evaluated without training.
- A cell's statistics are over seeds: mean, sample standard deviation (ddof=1; None for one seed)
  and n = number of seeds. When several FINISHED runs share a seed in one cell (a rerun, or two
  experiments reported together), the one that started last counts and the others are reported
  as duplicates.
"""

from __future__ import annotations

from collections import Counter

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Callable, Iterable

from kdtune.config import INITS as INIT_ORDER  # the paper's order: teacher, base, scratch
from kdtune.config.params import default_params
from kdtune.metrics import HELDOUT, MAJORITY_HELDOUT, TEACHER_HELDOUT, heldout_metric, metric_name
from kdtune.report.paper import PAPER_DATASETS
from kdtune.tracking.query import TrialRecord

INIT_LABELS = {"teacher": "from-teacher", "base": "from-base", "scratch": "from-scratch"}
TEACHER_LABEL = "from-base (Teacher)"
USED_STATUS = "FINISHED"
# Params that legitimately differ between the runs of one cell.
PER_RUN_PARAMS = {"seed"}


# Neutral keys of the compared metric (see `project`).
SCORE, TEACHER_SCORE, MAJORITY_SCORE = (f"score:{stem}" for stem in (HELDOUT, TEACHER_HELDOUT, MAJORITY_HELDOUT))
LANG_SCORE = f"score:{HELDOUT}/"
# What stores written before both F1s were logged call each metric (macro-F1 was "f1", micro-F1
# was logged as accuracy; per-language scores were macro only).
LEGACY_NAMES = {"macro_f1": "f1", "micro_f1": "accuracy"}


def project(records: Iterable[TrialRecord], metric: str) -> list[TrialRecord]:
    """Each record with `metric`'s test, teacher-test, majority and per-language scores copied
    under the neutral keys (from the current names, else the legacy ones)."""
    legacy = LEGACY_NAMES[metric]
    out = []
    for rec in records:
        m = rec.metrics
        extra = {}
        for neutral, stem in ((SCORE, HELDOUT), (TEACHER_SCORE, TEACHER_HELDOUT), (MAJORITY_SCORE, MAJORITY_HELDOUT)):
            for name in (metric_name(stem, metric), metric_name(stem, legacy)):
                if name in m:
                    extra[neutral] = m[name]
                    break
        for prefix in (f"{heldout_metric(metric)}/", f"{heldout_metric(legacy)}/"):
            langs = {k[len(prefix):]: v for k, v in m.items() if k.startswith(prefix)}
            if langs:
                extra.update({LANG_SCORE + lang: v for lang, v in langs.items()})
                break
        out.append(dataclasses.replace(rec, metrics={**m, **extra}))
    return out


UNSET = ("", "none", "null")
TEACHER_WIDTH = math.inf  # hidden "None": the student keeps the teacher's hidden size


def param(rec: TrialRecord, key: str) -> str | None:
    value = rec.params.get(key)
    return None if value is None else str(value).strip()


def is_unset(rec: TrialRecord, key: str) -> bool:
    return (param(rec, key) or "").lower() in UNSET


def param_int(rec: TrialRecord, key: str) -> int | None:
    try:
        return int(float(rec.params[key]))
    except (KeyError, TypeError, ValueError):
        return None


def param_float(rec: TrialRecord, key: str) -> float | None:
    try:
        return float(rec.params[key])
    except (KeyError, TypeError, ValueError):
        return None


def param_bool(rec: TrialRecord, key: str) -> bool | None:
    value = (param(rec, key) or "").lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    return None


def init_label(init: str) -> str:
    return INIT_LABELS.get(init, init)


def init_sort_key(init: str) -> tuple[int, str]:
    return (INIT_ORDER.index(init), "") if init in INIT_ORDER else (len(INIT_ORDER), init)


def dataset_order(datasets: Iterable[str], always: Iterable[str] = ()) -> list[str]:
    """Paper datasets first (massive, tsm), then any others alphabetically."""
    names = set(datasets) | set(always)
    paper = [d for d in PAPER_DATASETS if d in names]
    return paper + sorted(names - set(paper))


def at_table_fraction(records: list[TrialRecord]) -> list[TrialRecord]:
    """Per dataset, the runs at the table's data fraction: the one most of `records` use.

    The paper's tables use all the training data (fraction 1.0), and Figure 2's sweep adds fewer
    runs at other fractions; a scaled-down reproduction runs its tables at, say, 10 % and its
    Figure 2 points around it. The fraction most runs share is the table's in both cases (a tie
    goes to the larger fraction).
    """
    counts: dict[str, Counter] = {}
    for rec in records:
        fraction = param_float(rec, "fraction")
        if fraction is not None:
            counts.setdefault(param(rec, "dataset") or "", Counter())[fraction] += 1
    chosen = {dataset: max(c, key=lambda f: (c[f], f)) for dataset, c in counts.items()}
    return [
        r for r in records
        if param_float(r, "fraction") is not None
        and math.isclose(param_float(r, "fraction"), chosen[param(r, "dataset") or ""])
    ]


def data_notes(records: list[TrialRecord]) -> list[str]:
    """One note per dataset whose runs use less than all its languages or all its rows."""
    notes = []
    for dataset in dataset_order({param(r, "dataset") or "?" for r in records}):
        runs = [r for r in records if (param(r, "dataset") or "?") == dataset]
        fractions = sorted({param_float(r, "fraction") for r in runs} - {None})
        languages = sorted({param(r, "languages") or "all" for r in runs})
        parts = []
        if languages != ["all"]:
            parts.append("languages " + " | ".join(languages))
        if fractions and not (len(fractions) == 1 and math.isclose(fractions[0], 1.0)):
            parts.append("training data " + ", ".join(f"{100 * f:g}%" for f in fractions) + " of those rows")
        if parts:
            notes.append(f"{dataset}: " + "; ".join(parts) + ".")
    return notes


def is_trained(rec: TrialRecord) -> bool:
    epochs = param_float(rec, "epochs")
    return epochs is not None and epochs > 0


def is_copy_only(rec: TrialRecord) -> bool:
    return param_float(rec, "epochs") == 0


def teacher_partition(rec: TrialRecord) -> str | None:
    """The teacher's training languages; unset means the student's own training partition."""
    return param(rec, "train_partition") if is_unset(rec, "teacher_partition") else param(rec, "teacher_partition")


def hidden_of(rec: TrialRecord) -> float | None:
    """Student hidden size; TEACHER_WIDTH when unset (teacher's size); None when unparsable."""
    return TEACHER_WIDTH if is_unset(rec, "hidden") else param_int(rec, "hidden")


def layers_of(rec: TrialRecord) -> int | None:
    """Student layers; None when unset (half the teacher's) or unparsable."""
    return None if is_unset(rec, "layers") else param_int(rec, "layers")


def hidden_label(hidden: float | None) -> str:
    return "= teacher" if hidden == TEACHER_WIDTH else ("?" if hidden is None else str(int(hidden)))


def layers_label(rec_layers: int | None) -> str:
    return "½ teacher" if rec_layers is None else str(rec_layers)


def full_width(records: Iterable[TrialRecord]) -> dict[str, float]:
    """Per dataset, the widest student hidden size among `records` (the paper's 768)."""
    widest: dict[str, float] = {}
    for rec in records:
        hidden, dataset = hidden_of(rec), param(rec, "dataset")
        if hidden is not None and dataset is not None:
            widest[dataset] = max(hidden, widest.get(dataset, hidden))
    return widest


def only_full_width(records: list[TrialRecord]) -> list[TrialRecord]:
    widest = full_width(records)
    return [r for r in records if hidden_of(r) == widest.get(param(r, "dataset") or "")]


def setup_matches(rec: TrialRecord, train: str | Iterable[str], eval_: str, teacher: str) -> bool:
    """train/eval/teacher partitions as named in the run's params (`train` may be a set)."""
    trains = {train} if isinstance(train, str) else set(train)
    return (
        param(rec, "train_partition") in trains
        and param(rec, "eval_partition") == eval_
        and teacher_partition(rec) == teacher
    )


@dataclass(frozen=True)
class Cell:
    """Scores of one table cell (percent), the paper's number, and whether the cell applies."""

    values: tuple[float, ...] = ()
    seeds: tuple[str, ...] = ()
    paper: float | int | None = None
    applicable: bool = True  # False for the teacher's KD column ("-" in the paper)
    majority: float | None = None  # the majority-class baseline of its runs' test rows (percent; the highest)
    teacher: float | None = None  # their teacher's score on the same test rows (percent; the highest)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def diff(self) -> float | None:
        mean = self.mean
        return None if mean is None or self.paper is None else mean - float(self.paper)

    @property
    def missing(self) -> bool:
        return self.applicable and not self.values


def seed_cell(
    records: list[TrialRecord], metric: str = SCORE, paper: float | int | None = None
) -> tuple[Cell, int]:
    """A cell from runs (one value per seed, latest run per seed) and how many duplicates it dropped."""
    latest: dict[str, TrialRecord] = {}
    scored = [r for r in records if metric in r.metrics and math.isfinite(r.metrics[metric])]
    for rec in sorted(scored, key=lambda r: (r.start_time, r.run_id)):
        latest[param(rec, "seed") or rec.run_id] = rec
    seeds = sorted(latest, key=lambda s: (len(s), s))
    def highest(key: str) -> float | None:
        values = [100.0 * r.metrics[key] for r in latest.values() if key in r.metrics]
        return max(values) if values else None

    cell = Cell(
        values=tuple(100.0 * latest[s].metrics[metric] for s in seeds), seeds=tuple(seeds), paper=paper,
        majority=highest(MAJORITY_SCORE), teacher=highest(TEACHER_SCORE),
    )
    return cell, len(scored) - len(latest)


def teacher_cell(records: list[TrialRecord], paper: float | int | None = None, key: str = TEACHER_SCORE) -> Cell:
    """The teacher's score from its students' teacher-test score: one value per distinct teacher.

    Every student of one teacher logs the same number, so the distinct values are the teachers
    (n counts teachers, not students). With `key=MAJORITY_SCORE`: the majority-class baseline of
    each distinct test selection, the same way.
    """
    values = sorted({round(r.metrics[key], 12) for r in records if key in r.metrics})
    return Cell(values=tuple(100.0 * v for v in values), paper=paper)


def group_by(records: Iterable[TrialRecord], key: Callable[[TrialRecord], tuple]) -> dict[tuple, list[TrialRecord]]:
    groups: dict[tuple, list[TrialRecord]] = {}
    for rec in records:
        groups.setdefault(key(rec), []).append(rec)
    return groups


def varying_params(records: list[TrialRecord]) -> set[str]:
    """Params (other than per-run ones such as seed) whose value differs between `records`. A trial
    field that a run did not log counts as what the run ran with (`default_params`: the field's
    default, or its legacy default where the default changed later), so it is not mixed with a run
    that logged that value."""
    keys = set().union(*(r.params for r in records)) if records else set()
    defaults = default_params()
    out = set()
    for key in keys - PER_RUN_PARAMS:
        if key.endswith(("_dir", "_path", "hash")):
            continue
        if len({r.params.get(key, defaults.get(key)) for r in records}) > 1:
            out.add(key)
    return out
