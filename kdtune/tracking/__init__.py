"""MLflow tracking: the only package in kdtune that imports mlflow.

- `store`: where runs go (default sqlite store under ./mlruns, URI resolution, reachability).
- `runs`: writing sweep parent runs, teacher runs and per-trial child runs.
- `query`: reading runs back as plain records for reports.
- `tags`: every tag name kdtune writes or reads (plain strings, no mlflow import).

Run schema (what `runs` writes and `query`/`report` read):
- tags: `kdtune.kind` = sweep | teacher | trial; `kdtune.sweep` (sweep name); `kdtune.config_hash`
  (trial and teacher runs); trial runs are nested under the sweep run (`mlflow.parentRunId`); the
  sweep run's driver lease (`kdtune.driver.host`, `.pid`, `.heartbeat`) while a driver runs it;
  finished trial runs: `kdtune.teacher_cache` (built, reused, off or "skipped: why").
- trial params: every resolved trial-config field (dataset, base_model, init, layers, hidden, kd,
  train_partition, eval_partition, teacher_partition, fraction, seed, epochs, ...).
- trial metrics, each for <metric> in macro_f1 and micro_f1 (fractions in [0, 1]; docs/fidelity.md):
  `train_loss` and `grad_norm` (per log step), `val_<metric>` (per evaluation step),
  `best_val_<metric>`, `test_<metric>` and `test_<metric>/<language>` of the best checkpoint,
  `teacher_test_<metric>` (the teacher on the same test selection), `majority_test_<metric>`
  (every test row predicted as the most frequent class), `best_step`. Stores written before
  both F1s were logged have `val_f1`, `test_f1`, `test_accuracy`, ...: the report reads both.
  The names come from `kdtune.metrics` (`metric_name`, the stems, `best_metric`, `heldout_metric`).
"""
