"""The sweep runner: the only package that starts Ray.

    spec = load_sweep("sweeps/table2.yaml")
    run_sweep(spec)

- `run`: `run_sweep`, one run of a sweep from preflight to the summary (and `describe`, the
  `--dry-run` listing);
- `preflight`: every check before work starts;
- `lease`: one live driver per sweep (host, pid, heartbeat on the parent run);
- `plan`: per grid point, skip, resume or rerun (a pure function, no Ray, no MLflow);
- `teachers`: presets and teachers, before the trials;
- `tuner`: Ray start-up and the Ray Tune grid of trials;
- `outcome`: how the trials ended, and the summary table;
- `trainable`: the Ray Tune function trainable (`kdtune.training.trial` + Ray + tracking);
- `lifecycle`: a trial run's status, verdict tags and reports to Tune (the only code that ends a
  trial run);
- `resources_check`: what a trial asks of Ray against Ray's node records (preflight, waiting).

Ray is imported only by `teachers`, `tuner` and `trainable`, when a sweep actually runs
(`kdtune.bench.overhead` measures the sweep's overhead with its own Ray import).
"""

from kdtune.sweep.outcome import SweepOutcome
from kdtune.sweep.run import describe, run_sweep

__all__ = ["SweepOutcome", "describe", "run_sweep"]
