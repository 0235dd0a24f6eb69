"""Per-language test macro-F1 of one run group: which languages gain most from copying weights.

The group is chosen by a filter on params (default: the paper's Table 2 setting with KD: train,
test and teacher data all languages, the data fraction most runs use, epochs > 0) and
restricted to full-width students. Per dataset: languages are rows (from the compared metric's per-language test scores, `test_<metric>/<language>`), inits are
columns, each value the mean over seeds in percent; `gain` = from-teacher minus from-scratch (or
minus from-base when no scratch run exists), in points. The top languages by gain are marked.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from kdtune.errors import UsageError
from kdtune.report.records import (
    LANG_SCORE,
    at_table_fraction,
    group_by,
    init_sort_key,
    is_trained,
    only_full_width,
    param,
    param_bool,
    teacher_partition,
)
from kdtune.tracking.query import TrialRecord

LANG_PREFIX = LANG_SCORE
DEFAULT_FILTER = {
    "kd": "True",
    "train_partition": "all",
    "eval_partition": "all",
    "teacher_partition": "all",
}  # and, unless the filter names a fraction, the fraction most runs use (as the tables)


@dataclass
class LanguageTable:
    dataset: str
    filter: dict[str, str]
    inits: list[str]
    # language -> init -> per-seed values (percent)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    baseline: str | None = None  # the init the gain is measured against (scratch, else base)
    marked: list[str] = field(default_factory=list)  # languages with the largest gain
    run_ids: set[str] = field(default_factory=set)

    def mean(self, language: str, init: str) -> float | None:
        vals = self.values.get(language, {}).get(init) or []
        return statistics.fmean(vals) if vals else None

    def std(self, language: str, init: str) -> float | None:
        vals = self.values.get(language, {}).get(init) or []
        return statistics.stdev(vals) if len(vals) > 1 else None

    def n(self, language: str, init: str) -> int:
        return len(self.values.get(language, {}).get(init) or [])

    def gain(self, language: str) -> float | None:
        top, low = self.mean(language, "teacher"), self.mean(language, self.baseline) if self.baseline else None
        return None if top is None or low is None else top - low

    def languages(self) -> list[str]:
        """By gain, largest first; languages without a gain last, alphabetically."""
        with_gain = [lang for lang in self.values if self.gain(lang) is not None]
        rest = sorted(lang for lang in self.values if self.gain(lang) is None)
        return sorted(with_gain, key=lambda lang: (-self.gain(lang), lang)) + rest  # type: ignore[operator]


def parse_filter(text: str | None, trials: list[TrialRecord]) -> dict[str, str]:
    """`key=value,key=value` over the default filter; keys must be params the runs have."""
    chosen = dict(DEFAULT_FILTER)
    if not text:
        return chosen
    known = set().union(*(r.params for r in trials)) if trials else set()
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UsageError(f"--languages: expected key=value[,key=value...], got '{item}'")
        if key not in known:
            raise UsageError(f"--languages: unknown param '{key}'; the runs have: {', '.join(sorted(known))}")
        chosen[key] = value
    return chosen


def _matches(rec: TrialRecord, key: str, wanted: str) -> bool:
    if key == "kd":
        return param_bool(rec, "kd") == (wanted.lower() in ("true", "1", "yes"))
    if key == "fraction":
        try:
            return math.isclose(float(rec.params.get("fraction", "nan")), float(wanted))
        except ValueError:
            return False
    if key == "teacher_partition":
        return teacher_partition(rec) == wanted
    return param(rec, key) == wanted


def language_tables(trials: list[TrialRecord], filter_: dict[str, str]) -> list[LanguageTable]:
    sel = [
        r
        for r in trials
        if is_trained(r)
        and all(_matches(r, k, v) for k, v in filter_.items())
        and any(k.startswith(LANG_PREFIX) for k in r.metrics)
    ]
    if "fraction" not in filter_:
        sel = at_table_fraction(sel)
    out = []
    for (dataset,), runs in sorted(group_by(only_full_width(sel), lambda r: (param(r, "dataset") or "?",)).items()):
        inits = sorted({param(r, "init") or "?" for r in runs}, key=init_sort_key)
        table = LanguageTable(dataset=dataset, filter=dict(filter_), inits=inits)
        # Latest run per (init, seed), as in the tables.
        latest: dict[tuple[str, str], TrialRecord] = {}
        for rec in sorted(runs, key=lambda r: (r.start_time, r.run_id)):
            latest[(param(rec, "init") or "?", param(rec, "seed") or rec.run_id)] = rec
        table.run_ids = {r.run_id for r in latest.values()}
        for (init, _seed), rec in sorted(latest.items()):
            for key, value in rec.metrics.items():
                if key.startswith(LANG_PREFIX) and math.isfinite(value):
                    lang = key[len(LANG_PREFIX):]
                    table.values.setdefault(lang, {}).setdefault(init, []).append(100.0 * value)
        table.baseline = "scratch" if "scratch" in inits else ("base" if "base" in inits else None)
        if "teacher" in inits and table.baseline:
            ranked = [lang for lang in table.languages() if table.gain(lang) is not None]
            table.marked = ranked[: max(1, min(5, len(ranked) // 3))]
        out.append(table)
    return out
