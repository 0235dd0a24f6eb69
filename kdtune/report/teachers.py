"""The teachers behind a report: one row per FINISHED teacher run (tag kdtune.kind=teacher).

A teacher's validation score is what its students are measured against when a reader asks "how
good was the teacher on the languages it was trained on?"; students only log the teacher's *test*
score on their own test rows. The teacher run (kdtune/tracking/teachers.py) logs its hashed fields
as params and its best validation score under `best_metric(<its selection metric>)`, so this table
makes every teacher number in a write-up checkable from the report folder (teachers.csv).
"""

from __future__ import annotations

import csv
from pathlib import Path

from kdtune.metrics import LEGACY_METRIC, best_metric
from kdtune.report.records import USED_STATUS
from kdtune.tracking.query import TrialRecord
from kdtune.tracking.tags import CONFIG_HASH

PARAMS = ("dataset", "partition", "languages", "base_model", "epochs", "lr", "batch_size", "seeds", "best_seed",
          "metric")
HEADER = ("run_id", "run_name", "teacher_key", *PARAMS, "best_val", "train_minutes")


def teacher_rows(records: list[TrialRecord]) -> list[dict[str, str]]:
    """FINISHED teacher runs as CSV rows, sorted by dataset, partition and name. `best_val` is the
    teacher's own selection metric (param `metric`), as a fraction like runs.csv's scores."""
    rows = []
    for rec in records:
        if rec.kind != "teacher" or rec.status != USED_STATUS:
            continue
        metric = rec.params.get("metric", LEGACY_METRIC)
        best = rec.metrics.get(best_metric(metric))
        seconds = rec.metrics.get("train_seconds")
        rows.append({
            "run_id": rec.run_id, "run_name": rec.run_name, "teacher_key": rec.tags.get(CONFIG_HASH, ""),
            **{p: rec.params.get(p, "") for p in PARAMS},
            "best_val": "" if best is None else f"{best:.6f}",
            "train_minutes": "" if seconds is None else f"{seconds / 60:.1f}",
        })
    return sorted(rows, key=lambda r: (r["dataset"], r["partition"], r["run_name"]))


def write_csv(rows: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown(rows: list[dict[str, str]], with_csv: bool) -> list[str]:
    """The report's "Teachers" section (empty when no teacher run is in the experiment)."""
    if not rows:
        return []
    lines = ["## Teachers", "",
             "Best validation score of each teacher on its own training languages' validation rows "
             "(the metric it selects its checkpoint by), in percent.", "",
             "| teacher | dataset | trained on | epochs | best val | metric | train min |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        best = f"{100 * float(r['best_val']):.1f}" if r["best_val"] else "–"
        lines.append(f"| `{r['run_name']}` | {r['dataset']} | {r['partition']} | {r['epochs']} | {best} | "
                     f"{r['metric']} | {r['train_minutes'] or '–'} |")
    lines.append("")
    if with_csv:
        lines += ["- Data: [teachers.csv](teachers.csv)", ""]
    return lines
