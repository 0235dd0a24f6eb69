"""`kdtune best --experiment NAME [--sweep NAME] [--metric macro_f1|micro_f1]`: the best trial.

Reads the FINISHED trial runs (not superseded) of the experiment, or of one sweep in it, through
the MLflow client, picks the best by validation `metric` (default: the metric the runs compared
on), prints its scores and its config as a YAML `fixed:` block to paste into a sweep file
(every field that differs from its default; running it gives the same config hash).
"""

from __future__ import annotations

import argparse
import sys

from kdtune.errors import UsageError
from kdtune.metrics import METRICS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, metavar="NAME", help="MLflow experiment (the sweep's tracking.experiment)")
    p.add_argument("--sweep", metavar="NAME", help="only the trials of this sweep (its name:)")
    p.add_argument("--metric", choices=METRICS,
                   help="validation metric to rank by (default: the one the trials compared on)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlruns)")


def run(args: argparse.Namespace) -> int:
    from kdtune.config import make_trial
    from kdtune.config.params import fixed_block, values_from_params
    from kdtune.metrics import BEST_VAL, HELDOUT, LEGACY_METRIC, best_metric, metric_name
    from kdtune.tracking import query
    from kdtune.tracking.store import resolve_tracking_uri
    from kdtune.tracking.tags import CONFIG_HASH, SUPERSEDED, SWEEP

    uri = resolve_tracking_uri(args.tracking_uri)
    runs = [r for r in query.fetch_trials(uri, [args.experiment])
            if r.status == "FINISHED" and SUPERSEDED not in r.tags and (not args.sweep or r.tags.get(SWEEP) == args.sweep)]
    where = f"experiment '{args.experiment}'" + (f", sweep '{args.sweep}'" if args.sweep else "")
    if not runs:
        sweeps = sorted({r.tags.get(SWEEP, "") for r in query.fetch_trials(uri, [args.experiment])} - {""})
        raise UsageError(f"no FINISHED trial in {where}" + (f"; its sweeps: {', '.join(sweeps)}" if sweeps else ""))
    metric = args.metric
    if metric is None:
        used = sorted({r.params.get("metric", LEGACY_METRIC) for r in runs})
        if len(used) > 1:
            raise UsageError(f"--metric: the trials of {where} compared on {' and '.join(used)}; choose one")
        metric = used[0]
    ranked = [r for r in runs if best_metric(metric) in r.metrics]
    if not ranked:
        raise UsageError(f"--metric: no FINISHED trial in {where} logged {best_metric(metric)}")
    best = max(ranked, key=lambda r: (r.metrics[best_metric(metric)], -r.start_time))
    trial = make_trial(values_from_params(best.params, f"run {best.run_id}"))
    print(f"best of {len(ranked)} finished trials in {where} by validation {metric}: run {best.run_id}")
    print(f"  {best.run_name}")
    print("  " + "  ".join(f"{stem} {m} {best.metrics[metric_name(stem, m)]:.4f}" for stem in (BEST_VAL, HELDOUT)
                           for m in METRICS if metric_name(stem, m) in best.metrics))
    logged = best.tags.get(CONFIG_HASH)
    print(f"  config hash {trial.config_hash}" + ("" if logged in (None, trial.config_hash) else
                                                  f" (the run's tag says {logged}: its params are incomplete)"))
    print("# paste into a sweep file (every field that differs from its default):")
    sys.stdout.write(fixed_block(trial))
    return 0
