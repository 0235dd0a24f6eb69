"""The sweep's parent run tells the result: the best trial so far and a short markdown summary.

Updated as trials end (a Ray Tune callback in the driver) and once more when the run of the sweep
ends, from what MLflow holds (so a resumed sweep's earlier trials count too):
- metric `best_val_<metric>` (step: trials ended so far, so its history is the best-so-far curve);
- tag `kdtune.best_run`: the best child run's id; tags `best.<field>`: its value of every field
  the sweep varies (grid axes and sampled fields). Tags, not params: MLflow refuses to change a
  param once logged, and the best changes as trials end;
- tag `mlflow.note.content`: the summary (counts of finished, failed and stopped trials, the top
  trials by the metric), which MLflow's UI shows as the run's description.
"""

from __future__ import annotations

import json
from collections import Counter

from kdtune.config import SweepSpec, sampled_label
from kdtune.metrics import best_metric, heldout_metric
from kdtune.tracking.tags import (
    BEST_PREFIX, BEST_RUN, EARLY_STOPPED, INTERRUPTED, NOTE, SAMPLED, STOPPED, STOPPED_BY_RAY, SUPERSEDED,
)

TOP = 5


def state_of(run) -> str:
    """finished, failed, stopped (by a scheduler), interrupted or running."""
    status, tags = run.info.status, run.data.tags
    if status == "FINISHED":
        return "finished"
    if status == "FAILED":
        return "failed"
    if status == "RUNNING":
        return "running"
    if tags.get(STOPPED) == EARLY_STOPPED or (tags.get(STOPPED) == STOPPED_BY_RAY and INTERRUPTED not in tags):
        return "stopped"
    return "interrupted"


def ranked(runs, metric: str) -> list:
    """FINISHED runs that logged `best_val_<metric>`, best first (ties: the earlier run)."""
    key = best_metric(metric)
    done = [r for r in runs if r.info.status == "FINISHED" and key in r.data.metrics]
    return sorted(done, key=lambda r: (-r.data.metrics[key], r.info.start_time))


def _short(value: str) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4g}" if not number.is_integer() or "e" in str(value) else str(value)


def summary_markdown(spec: SweepSpec, runs, top: int = TOP) -> str:
    metric, fields = spec.metric, spec.varying
    counts = Counter(state_of(r) for r in runs)
    if spec.search is not None:
        how = (f"{spec.search.algorithm} search, {spec.search.num_samples} samples x {len(spec.points)} grid point(s)"
               f" (seed {spec.search.seed})")
    else:
        how = f"grid of {len(spec.trials)} trials"
    sched = f"; scheduler {spec.scheduler.type}" if spec.scheduler else ""
    lines = [f"**kdtune sweep `{spec.name}`**: {how}{sched}; compared on validation {metric}.", "",
             "Trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("finished", "failed", "stopped"))
             + "".join(f", {counts[s]} {s}" for s in ("interrupted", "running") if counts.get(s)), ""]
    best = ranked(runs, metric)
    if not best:
        return "\n".join(lines + ["No finished trial yet."])
    lines += [f"Top {min(top, len(best))} by validation {metric}:", "",
              "| # | run | val | test | " + " | ".join(fields) + " |",
              "|---|---|---|---|" + "---|" * len(fields)]
    for i, r in enumerate(best[:top], 1):
        m, p = r.data.metrics, r.data.params
        test = f"{m[heldout_metric(metric)]:.4f}" if heldout_metric(metric) in m else "-"
        cells = [_short(p.get(k, "-")) for k in fields]
        name = r.info.run_name or ""
        if SAMPLED in r.data.tags:  # its values are the columns: drop them from the name
            name = name.removesuffix("/" + sampled_label(json.loads(r.data.tags[SAMPLED])))
        lines.append(f"| {i} | {name} (`{r.info.run_id[:8]}`) | {m[best_metric(metric)]:.4f} | {test} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_parent(tracker, parent: str, spec: SweepSpec) -> None:
    """Write the best trial so far and the summary onto the parent run (see the module doc)."""
    runs = [r for r in tracker.trial_runs(parent) if SUPERSEDED not in r.data.tags]
    best = ranked(runs, spec.metric)
    tags = {NOTE: summary_markdown(spec, runs)}
    if best:
        top = best[0]
        tags[BEST_RUN] = top.info.run_id
        tags.update({f"{BEST_PREFIX}{k}": top.data.params.get(k, "") for k in spec.varying})
        ended = sum(state_of(r) in ("finished", "failed", "stopped") for r in runs)
        tracker.log_metrics(parent, {best_metric(spec.metric): top.data.metrics[best_metric(spec.metric)]}, ended)
    tracker.set_tags(parent, tags)
