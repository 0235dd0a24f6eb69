"""Classification scores: macro-F1 and micro-F1, overall and per language.

The paper reports only "F1" (docs/fidelity.md gives the evidence for each reading), so kdtune
computes both everywhere and a trial's `metric` picks the one that selects checkpoints. For
single-label classification micro-F1 equals accuracy. Light to import: numpy and scikit-learn
load on first use.
"""

from __future__ import annotations

from typing import Any

METRICS = ("macro_f1", "micro_f1")
# The paper's metric: its random row (Table 5, footnote 2) and its near-random cells ("around 7%"
# on MASSIVE) are the majority class's micro-F1 (= accuracy); docs/fidelity.md has the evidence.
DEFAULT_METRIC = "micro_f1"
# What a run logged before the `metric` param existed was selected by: readers of old runs
# (the report, `kdtune best`) take this, never the current default.
LEGACY_METRIC = "macro_f1"


# The stems of the MLflow metrics a FINISHED trial logs for its final scores, each as
# `<stem>_<metric>` (`metric_name`): the student's best checkpoint on the test split, the teacher
# on the same test selection, the test set's majority class, the best validation score.
HELDOUT, TEACHER_HELDOUT, MAJORITY_HELDOUT, BEST_VAL = "test", "teacher_test", "majority_test", "best_val"
FINAL_STEMS = (HELDOUT, TEACHER_HELDOUT, MAJORITY_HELDOUT, BEST_VAL)


def metric_name(stem: str, metric: str) -> str:
    """The logged name of `metric` (macro_f1, micro_f1, or a legacy name) under `stem`."""
    return f"{stem}_{metric}"


def reported_metric(metric: str) -> str:
    """The result key a trial reports to Ray and the Tuner, schedulers and searchers compare: one
    name, so they cannot drift apart (a trial that reports another name fails the whole sweep)."""
    return f"val_{metric}"


def val_metric(metric: str) -> str:
    """The MLflow metric a trial logs at every evaluation (its validation curve). Spelled like
    `reported_metric` today, but a different record: the Ray key may be renamed, this one is in
    every stored run."""
    return f"val_{metric}"


def heldout_metric(metric: str) -> str:
    """The MLflow metric a FINISHED trial logs for its best checkpoint's test score; per language
    it is `heldout_metric(metric) + "/" + language`. (Not named test_*: pytest would collect it.)"""
    return metric_name(HELDOUT, metric)


def best_metric(metric: str) -> str:
    """The MLflow metric a FINISHED trial logs for its best validation score, and the sweep's
    parent run for its best trial so far: the key ranking, `kdtune best` and the report read."""
    return metric_name(BEST_VAL, metric)


def scores(preds, golds, languages: list[str] | None = None) -> dict[str, Any]:
    """Macro-F1 and micro-F1 (= accuracy for single-label classes), plus both per language when
    languages are given: ``{"macro_f1", "micro_f1", "per_language": {lang: {...}}}``.

    The paper says only "F1" (docs/fidelity.md): both are kept everywhere, `metric` picks one."""
    import numpy as np
    from sklearn.metrics import f1_score

    def both(g, p):
        return {m: float(f1_score(g, p, average=m.split("_")[0], zero_division=0)) for m in METRICS}

    out: dict[str, Any] = both(golds, preds)
    if languages is not None:
        langs = np.asarray(languages)
        out["per_language"] = {lang: both(golds[langs == lang], preds[langs == lang]) for lang in sorted(set(languages))}
    return out


def majority_scores(golds) -> dict[str, float]:
    """Both F1s of predicting the most frequent gold class for every row (the paper's random row)."""
    import numpy as np

    values, counts = np.unique(golds, return_counts=True)
    return scores(np.full_like(golds, values[np.argmax(counts)]), golds)
