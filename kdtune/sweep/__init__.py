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
- `outcome`: how the trials ended, and the summary table.

Ray is imported only by `teachers` and `tuner`, when a sweep actually runs.
"""

from kdtune.sweep.outcome import SweepOutcome
from kdtune.sweep.run import describe, run_sweep

__all__ = ["SweepOutcome", "describe", "run_sweep"]
