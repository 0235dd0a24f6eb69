"""Trial and sweep configuration: plain dataclasses, YAML loading, validation, grid expansion.

- `kdtune.config.trial`: `TrialConfig` (one trial), `TeacherSpec`, the hashes, the allowed values
  of each choice, `make_trial` (coercion and validation of plain values).
- `kdtune.config.sweep_file`: `SweepSpec` and `load_sweep` (a sweep YAML -> its trials).
- `kdtune.config.scheduler`: `scheduler:` (asha, hyperband, median and their options).
- `kdtune.config.space`: `space:` and `search:` (sampled fields, seeded random draws, Optuna's limits).
- `kdtune.config.checks`: key and type checks of a mapping, "did you mean" hints.

The sweep YAML's keys are documented in `kdtune.config.sweep_file` (and `space:`/`search:` in
`kdtune.config.space`).

Every name is re-exported here: `from kdtune.config import TrialConfig, load_sweep` is the way in.
"""

from kdtune.config.checks import TYPE_WORDS, check_keys, did_you_mean
from kdtune.config.scheduler import SCHEDULER_KEYS, SCHEDULER_OPTIONS, Scheduler
from kdtune.config.sweep_file import (
    RESOURCE_KEYS,
    SWEEP_KEYS,
    TRACKING_KEYS,
    Resources,
    SweepSpec,
    apply_set,
    check_trial_keys,
    expand_grid,
    load_sweep,
    parse_sweep,
)
from kdtune.config.space import (
    ALGORITHMS,
    DISTRIBUTIONS,
    Dist,
    Search,
    coerce_sample,
    draws,
    sampled_label,
    sampled_values,
    search_name,
    study_key,
    with_sample,
)
from kdtune.config.trial import (
    ADDED_LATER,
    ATT_TARGETS,
    DATASETS,
    HEAD_MODES,
    HIDDEN_MATCH,
    INITS,
    LAYER_MAPS,
    PARTITIONS,
    PRECISIONS,
    TEACHER_UNHASHED,
    TRIAL_FIELDS,
    UNHASHED,
    TeacherSpec,
    TrialConfig,
    coerce,
    default_of,
    make_trial,
    stable_hash,
    validate_trial,
)

__all__ = [
    "ALGORITHMS", "DISTRIBUTIONS", "Dist", "SCHEDULER_OPTIONS", "Search", "coerce_sample", "draws",
    "sampled_label", "sampled_values", "search_name", "study_key", "with_sample",
    "ADDED_LATER", "ATT_TARGETS", "DATASETS", "HEAD_MODES", "HIDDEN_MATCH", "INITS", "LAYER_MAPS",
    "PARTITIONS", "PRECISIONS", "RESOURCE_KEYS", "SCHEDULER_KEYS", "SWEEP_KEYS", "TEACHER_UNHASHED",
    "TRACKING_KEYS", "TRIAL_FIELDS", "TYPE_WORDS", "UNHASHED", "Resources", "Scheduler", "SweepSpec",
    "TeacherSpec", "TrialConfig", "apply_set", "check_keys", "check_trial_keys", "coerce",
    "default_of", "did_you_mean", "expand_grid", "load_sweep", "make_trial", "parse_sweep",
    "stable_hash", "validate_trial",
]
