"""Every MLflow tag name kdtune writes or reads, and the tag values others match on.

Plain strings, no mlflow import: the report and the sweep's plan read these without paying for
mlflow. Run schema: see `kdtune.tracking`.
"""

# MLflow's own tags
PARENT_RUN = "mlflow.parentRunId"  # a trial run's sweep (parent) run
RUN_NAME = "mlflow.runName"
NOTE = "mlflow.note.content"  # a run's description (markdown), shown by MLflow's UI
EXPERIMENT_KIND = "mlflow.experimentKind"  # experiment tag: which view MLflow 3's UI opens on
TRAINING_KIND = "custom_model_development"  # ... the training runs view ("Machine learning")

# What a run is
KIND = "kdtune.kind"  # sweep | teacher | trial
SWEEP = "kdtune.sweep"  # the sweep's name
CONFIG_HASH = "kdtune.config_hash"  # trial runs: TrialConfig.config_hash; teacher runs: the teacher key
TEACHER_KEY = "kdtune.teacher_key"  # trial runs: the teacher they distil from
TEACHER_UPLOADED = "kdtune.teacher_uploaded"  # teacher runs whose folder is an artifact

# How a trial went
ATTEMPTS = "kdtune.attempts"  # 1 + retries (Ray's and later sweeps') in this run
NODE_ID = "kdtune.node_id"
NODE_IP = "kdtune.node_ip"
RESUMED_FROM_STEP = "kdtune.resumed_from_step"  # the checkpoint step a resumed trial started from
FAILURE = "kdtune.failure"  # why a FAILED trial failed (one line)
STOPPED = "kdtune.stopped"  # why Ray stopped it (early stop)
INTERRUPTED = "kdtune.interrupted"  # set on trials a Ctrl-C stopped
ORPHANED = "kdtune.orphaned"  # left RUNNING by a driver that died; the next driver ended it KILLED
SUPERSEDED = "kdtune.superseded"  # a FINISHED run that --force replaced
TEACHER_CACHE = "kdtune.teacher_cache"  # KD trials: built, reused, off or "skipped: why" (kdtune.training.teacher_cache)

# Searches (space:/search:): on trial runs
SAMPLED = "kdtune.sampled"  # JSON {field: value} of the trial's sampled fields
STUDY = "kdtune.study"  # the grid point it was sampled around (kdtune.config.space.study_key)
SPACE = "kdtune.space"  # JSON {field: {distribution: [args]}} of the sweep's space

# The sweep (parent) run's result so far, updated as trials end
BEST_RUN = "kdtune.best_run"  # the best trial's run id; its config as `best.<field>` tags
BEST_PREFIX = "best."

# The sweep (parent) run's driver lease: see `kdtune.sweep.lease`
DRIVER_HOST = "kdtune.driver.host"
DRIVER_PID = "kdtune.driver.pid"
DRIVER_HEARTBEAT = "kdtune.driver.heartbeat"  # seconds since the epoch, refreshed while it runs

# The `kdtune.stopped` value of a trial Ray stopped; the sweep refines it (early stop or interrupt).
STOPPED_BY_RAY = "stopped by Ray Tune (an early stop, or the sweep was interrupted)"
EARLY_STOPPED = "early stopped by the scheduler"
