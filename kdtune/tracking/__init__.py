"""MLflow tracking: the only package in kdtune that imports mlflow.

- `store`: where runs go (default sqlite store under ./mlruns, URI resolution, reachability).
- `runs`: writing sweep parent runs, teacher runs and per-trial child runs.
- `query`: reading runs back as plain records for reports.
- `tags`: every tag name kdtune writes or reads (plain strings, no mlflow import).

Run schema (what `runs` writes and `query`/`report` read):
- tags: `kdtune.kind` = sweep | teacher | trial; `kdtune.sweep` (sweep name); `kdtune.config_hash`
  (trial and teacher runs); trial runs are nested under the sweep run (`mlflow.parentRunId`); the
  sweep run's driver lease (`kdtune.driver.host`, `.pid`, `.heartbeat`) while a driver runs it.
- trial params: every resolved trial-config field (dataset, base_model, init, layers, hidden, kd,
  train_partition, eval_partition, teacher_partition, fraction, seed, epochs, ...).
- trial metrics: `train_loss` (per optimizer step), `val_f1` (per evaluation step), `best_val_f1`,
  `test_f1` and `test_accuracy` of the best checkpoint (fractions in [0, 1]), `test_f1/<language>`,
  `teacher_test_f1` (the teacher on the same test selection), `best_step`.
"""
