"""The trial: one student training as a frozen dataclass, its hash, and its validation.

`TrialConfig` holds every setting of one trial; `config_hash` hashes every field that can change
a result (not `UNHASHED`; `ADDED_LATER` fields at their default stay out, so old hashes hold).
`TeacherSpec` is the part the teacher stage reads, keyed the same way. `make_trial` turns plain
YAML values into a checked `TrialConfig`; each check raises `UsageError` with one line naming the
file, the key path and what is allowed. The allowed values of each choice live here, once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from kdtune.config.checks import did_you_mean
from kdtune.errors import UsageError
from kdtune.metrics import DEFAULT_METRIC, LEGACY_METRIC, METRICS

DATASETS = ("massive", "tsm", "synthetic")
INITS = ("teacher", "base", "scratch")
PARTITIONS = ("all", "seen", "unseen", "english")
LAYER_MAPS = ("paper", "distilbert", "first", "last", "uniform")
HEAD_MODES = ("keep_heads", "keep_head_dim")
HIDDEN_MATCH = ("linear", "select", "skip")
ATT_TARGETS = ("probs", "scores")
PRECISIONS = ("auto", "fp32", "bf16")
# Fields that take a list of languages, kept as one comma string (hashable, readable in MLflow).
LANGUAGE_LISTS = ("languages", "train_partition", "eval_partition", "teacher_partition")


@dataclass(frozen=True)
class TrialConfig:
    """One student training: everything that decides its result, nothing else."""

    # data
    dataset: str = "massive"
    data_dir: str | None = None  # where the files are; not part of the hash
    # The dataset's languages this experiment uses ("all" or a list); the partitions below are
    # taken inside them (a cheaper experiment on a few locales keeps seen/unseen meaningful).
    languages: str = "all"
    train_partition: str = "all"
    eval_partition: str = "all"  # test languages
    teacher_partition: str | None = None  # teacher's training languages; None = train_partition
    fraction: float = 1.0
    max_length: int = 128
    # student
    base_model: str = "xlm-roberta-base"  # hub name, local dir, or preset:NAME (offline)
    init: str = "teacher"
    layers: int | None = None  # None: half the teacher's layers
    hidden: int | None = None  # None: the teacher's hidden size
    layer_map: str | tuple[int, ...] = "paper"
    head_mode: str = "keep_heads"
    hidden_dropout: float | None = None  # the student's; None = the base model's own value
    attention_dropout: float | None = None
    # loss
    kd: bool = True
    w_att: float = 1.0
    w_hid: float = 1.0
    w_emb: float = 1.0
    w_pred: float = 1.0
    w_clf: float = 1.0
    att_target: str = "probs"  # pre-dropout softmax probabilities, or "scores" (TinyBERT's)
    hidden_match: str = "linear"  # the paper's learned W when widths differ (identity when equal)
    # optimisation (transformers' defaults unless the paper says otherwise)
    seed: int = 1
    epochs: float = 30.0
    max_steps: int | None = None
    batch_size: int = 8  # transformers' default per-device batch size, as the paper used
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0  # transformers' Trainer default; 0 = no clipping
    metric: str = DEFAULT_METRIC  # what checkpoint selection, teacher seed choice, schedulers and search compare
    eval_steps: int = 5000
    log_steps: int = 50
    group_by_length: bool = True
    precision: str = "auto"
    compile: bool = False  # torch.compile the student and teacher (speed only; pays on long GPU runs)
    teacher_cache: bool = True  # KD reads the teacher's outputs from kdtune.training.teacher_cache (speed only)
    # Train an embedding table of the token ids the trial's rows use, where that pays, student and
    # teacher; the saved model has the full vocabulary (kdtune.models.vocab; speed only)
    used_vocab: bool = True
    # teacher stage (fine-tuned once per distinct teacher key, best of teacher_seeds by val F1)
    teacher_epochs: float = 30.0
    teacher_max_steps: int | None = None
    teacher_lr: float = 5e-5
    teacher_batch_size: int = 8
    teacher_eval_steps: int = 5000
    teacher_seeds: tuple[int, ...] = (1,)
    # None: the student's value. Set them to tune the student's without a new teacher per value.
    teacher_weight_decay: float | None = None
    teacher_warmup_ratio: float | None = None
    teacher_max_grad_norm: float | None = None
    # outputs
    save_model: bool = False

    @property
    def resolved_teacher_partition(self) -> str:
        return self.teacher_partition or self.train_partition

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def hashed_fields(self) -> dict[str, Any]:
        """What the config hash hashes: every field that can change a result."""
        return {k: v for k, v in self.to_dict().items() if k not in UNHASHED and not _new_default(k, v)}

    @property
    def config_hash(self) -> str:
        return stable_hash(self.hashed_fields())

    @property
    def teacher_key(self) -> str:
        """Content key of the teacher this trial distils from (and copies from, for init=teacher)."""
        return self.teacher_spec().key

    def teacher_spec(self) -> "TeacherSpec":
        """The teacher's settings, each derived by one rule: `teacher_<name>` where the trial has
        it (falling back to the student's `<name>` where `TEACHER_FALLBACK` says None means so),
        the trial's own `<name>` otherwise; the partition is the resolved teacher partition."""
        values = {}
        for name in TEACHER_SPEC_FIELDS:
            own = f"teacher_{name}"
            if name == "partition":
                values[name] = self.resolved_teacher_partition
            elif own in TRIAL_FIELDS:
                value = getattr(self, own)
                values[name] = _either(value, getattr(self, name)) if name in TEACHER_FALLBACK else value
            else:
                values[name] = getattr(self, name)
        return TeacherSpec(**values)

    def teacher_fields(self) -> dict[str, Any]:
        return self.teacher_spec().hashed_fields()

    @property
    def run_name(self) -> str:
        """Readable child-run name, e.g. massive/teacher/L6/h768/kd/all-all/data100%/s1."""
        layers = f"L{self.layers}" if self.layers else "Lhalf"  # the default: half the teacher's
        hidden = f"h{self.hidden}" if self.hidden else "hfull"
        part = f"{self.train_partition}-{self.eval_partition}"
        if self.teacher_partition and self.teacher_partition != self.train_partition:
            part = f"T{self.teacher_partition}-{part}"
        name = f"{self.dataset}/{self.init}/{layers}/{hidden}/{'kd' if self.kd else 'nonkd'}"
        name += f"/{part}/data{self.fraction * 100:g}%/s{self.seed}"
        return name + ("/copy-only" if self.epochs == 0 else "")


# where and how fast, not what
UNHASHED = frozenset({"data_dir", "save_model", "compile", "teacher_cache", "used_vocab"})
# Fields added after stores existed: at their default they stay out of the hash, so every trial
# run before they existed keeps its hash (and is still found as FINISHED).
ADDED_LATER = {"languages": "all", "teacher_weight_decay": None, "teacher_warmup_ratio": None,
               "teacher_max_grad_norm": None}


# What a run that did not log a field ran with, where that differs from today's default: the
# field's default changed after stores existed (readers of old runs: config/params.py).
LEGACY_DEFAULTS = {"metric": LEGACY_METRIC}


def _either(value, fallback):
    return fallback if value is None else value


def _new_default(key: str, value: Any) -> bool:
    return key in ADDED_LATER and value == ADDED_LATER[key]


TRIAL_FIELDS = {f.name: f for f in fields(TrialConfig)}


@dataclass(frozen=True)
class TeacherSpec:
    """Everything teacher fine-tuning reads, and nothing else: `kdtune.training.teacher_store.fine_tune` gets
    this object, not the trial, so a setting it uses cannot be missing from the teacher's key.

    Every field is part of the key except `TEACHER_UNHASHED` (where the data lives, how often
    to log). Changing a default here changes the key of every teacher at that default."""

    dataset: str
    data_dir: str | None
    languages: str
    partition: str
    max_length: int
    group_by_length: bool
    base_model: str
    epochs: float
    max_steps: int | None
    lr: float
    batch_size: int
    eval_steps: int
    seeds: tuple[int, ...]
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    metric: str
    precision: str
    log_steps: int
    used_vocab: bool = True  # speed only: the same computation (tests/test_vocab.py)

    def hashed_fields(self) -> dict[str, Any]:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if d["languages"] == "all":  # added after teachers existed: at its default, out of the key
            del d["languages"]
        return {k: v for k, v in d.items() if k not in TEACHER_UNHASHED}

    @property
    def key(self) -> str:
        return stable_hash(self.hashed_fields())


TEACHER_UNHASHED = frozenset({"data_dir", "log_steps", "used_vocab"})  # where the data is, how often to print, speed
TEACHER_SPEC_FIELDS = tuple(f.name for f in fields(TeacherSpec))
# teacher_<name> None: the student's <name> (teacher_max_steps None is no cap, as max_steps None)
TEACHER_FALLBACK = frozenset({"weight_decay", "warmup_ratio", "max_grad_norm"})


def stable_hash(obj: Any, *, spaced: bool = False) -> str:
    """16 hex digits of sha256 over `obj` as sorted JSON. `spaced`: json.dumps' default separators
    (", ", ": "), as the preset cache keys were made; the other keys are compact."""
    blob = json.dumps(obj, sort_keys=True, separators=None if spaced else (",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_of(key: str) -> Any:
    f = TRIAL_FIELDS[key]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def make_trial(values: dict[str, Any], path: str = "<config>", sections: dict[str, str] | None = None) -> TrialConfig:
    """Build and validate one TrialConfig from plain values (YAML scalars).

    `sections` says where each key was written (fixed, grid, overrides[i].set), for messages.
    """
    sections = sections or {}
    prefix = lambda key: f"{sections[key]}." if key in sections else ""  # noqa: E731
    unknown = set(values) - set(TRIAL_FIELDS)
    if unknown:
        key = sorted(unknown)[0]
        raise UsageError(f"{path}: {prefix(key)}{key}: unknown trial field{did_you_mean(key, TRIAL_FIELDS)}")
    # Defaults go through the same coercion, so a hash never depends on 30 vs 30.0.
    clean = {key: coerce(key, values.get(key, default_of(key)), path, prefix(key)) for key in TRIAL_FIELDS}
    trial = TrialConfig(**clean)
    validate_trial(trial, path, prefix)
    return trial


def field_type(key: str) -> tuple[str, bool]:
    """A trial field's base type (bool, int, float, str, tuple) and whether it may be None: the one
    place that reads the fields' annotations (strings, under `from __future__ import annotations`)."""
    annotation = str(TRIAL_FIELDS[key].type)
    return annotation.split("[")[0].split(" ")[0], "None" in annotation


def coerce(key: str, value: Any, path: str, prefix: str) -> Any:
    kind, optional = field_type(key)
    where = f"{path}: {prefix}{key}"
    if value is None:
        if optional:
            return None
        raise UsageError(f"{where}: a value is required ({str(TRIAL_FIELDS[key].type).replace(' | None', '')})")
    if key == "layer_map":
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        if isinstance(value, str) and value in LAYER_MAPS:
            return value
        raise UsageError(f"{where}: {value!r} not allowed; allowed: {', '.join(LAYER_MAPS)} or a list of teacher layer indices")
    if key == "teacher_seeds":
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            return tuple(value)
        raise UsageError(f"{where}: expected an int or a non-empty list of ints, got {value!r}")
    if key in LANGUAGE_LISTS and isinstance(value, list):
        if not value or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where}: a language list must be non-empty strings, got {value!r}")
        return ",".join(value)  # a comma list of languages: hashable, readable in MLflow
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where}: expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UsageError(f"{where}: expected an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise UsageError(f"{where}: expected a number, got {value!r}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise UsageError(f"{where}: expected a string, got {value!r}")
    return value


def validate_trial(t: TrialConfig, path: str, prefix=lambda key: "") -> None:
    def bad(key: str, msg: str) -> UsageError:
        return UsageError(f"{path}: {prefix(key)}{key}: {msg}")

    choices = {
        "dataset": DATASETS,
        "init": INITS,
        "head_mode": HEAD_MODES,
        "hidden_match": HIDDEN_MATCH,
        "att_target": ATT_TARGETS,
        "metric": METRICS,
        "precision": PRECISIONS,
    }
    for key, allowed in choices.items():
        value = getattr(t, key)
        if value not in allowed:
            raise bad(key, f"{value!r} not allowed; allowed: {', '.join(allowed)}")
    for key in ("train_partition", "eval_partition", "teacher_partition"):
        value = getattr(t, key)
        if value is not None and not value:
            raise bad(key, f"empty; allowed: {', '.join(PARTITIONS)} or a list of languages")
    if not t.languages:
        raise bad("languages", "empty; allowed: all or a list of the dataset's languages")
    if not 0 < t.fraction <= 1:
        raise bad("fraction", f"{t.fraction} out of range; allowed: 0 < fraction <= 1")
    if t.epochs < 0 or t.teacher_epochs <= 0:
        raise bad("epochs", "epochs must be >= 0 (0 = evaluate the copied student) and teacher_epochs > 0")
    for key in ("batch_size", "teacher_batch_size", "eval_steps", "teacher_eval_steps", "log_steps", "max_length"):
        if getattr(t, key) <= 0:
            raise bad(key, f"must be > 0, got {getattr(t, key)}")
    for key in ("layers", "hidden", "max_steps", "teacher_max_steps"):
        value = getattr(t, key)
        if value is not None and value <= 0:
            raise bad(key, f"must be > 0, got {value}")
    if t.lr <= 0 or t.teacher_lr <= 0:
        raise bad("lr", "learning rates must be > 0")
    for key in ("warmup_ratio", "teacher_warmup_ratio"):
        value = getattr(t, key)
        if value is not None and not 0 <= value < 1:
            raise bad(key, f"{value} out of range; allowed: 0 <= {key} < 1")
    for key in ("max_grad_norm", "teacher_max_grad_norm", "weight_decay", "teacher_weight_decay"):
        value = getattr(t, key)
        if value is not None and value < 0:
            raise bad(key, f"{value} out of range; allowed: >= 0" + (" (0 = no clipping)" if "norm" in key else ""))
    for key in ("hidden_dropout", "attention_dropout"):
        value = getattr(t, key)
        if value is not None and not 0 <= value < 1:
            raise bad(key, f"{value} out of range; allowed: 0 <= {key} < 1, or null for the base model's value")
    for key in ("w_att", "w_hid", "w_emb", "w_pred", "w_clf"):
        if getattr(t, key) < 0:
            raise bad(key, "loss weights must be >= 0")
    if isinstance(t.layer_map, tuple) and t.layers is not None and len(t.layer_map) != t.layers:
        raise bad("layer_map", f"lists {len(t.layer_map)} teacher layers but layers is {t.layers}")
