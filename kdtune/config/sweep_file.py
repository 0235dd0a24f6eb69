"""The sweep file: YAML loading, `--set` overrides, validation and grid expansion (no Ray).

A sweep YAML owns the experiment; this module turns it into a list of fully resolved
`TrialConfig`s (`kdtune.config.trial`), each identified by `config_hash` (a hash of every field
that can change a result). Every check here runs before any work starts and raises `UsageError`
with one line naming the file, the key path and what is allowed.

    name: table2                      # sweep name (the MLflow parent run)
    tracking: {uri: ..., experiment: ...}
    fixed: {base_model: xlm-roberta-base, epochs: 30}
    grid: {dataset: [massive, tsm], init: [teacher, base, scratch], kd: [false, true]}
    overrides: [{match: {dataset: tsm}, set: {eval_steps: 500}}]
    space: {lr: {loguniform: [1.0e-5, 1.0e-3]}}   # sampled fields (kdtune/config/space.py)
    search: {algorithm: optuna, num_samples: 20, seed: 0}
    resources: {cpu: 4, gpu: 1}
    max_concurrent: 4
    scheduler: {type: asha, grace_period: 2}
    max_failures: 1

`fixed:` values apply to every trial; `grid:` axes are crossed (their cartesian product); each
`overrides:` entry sets values where `match` holds, in file order. `space:` maps trial fields to
distributions (`loguniform`, `uniform`, `quniform`, `randint`, `choice`) and `search:` says how to
draw them (`algorithm` random or optuna, `num_samples` per grid point, `seed`, `startup_trials`):
see `kdtune.config.space`. A field is in at most one of grid and space, and overrides neither
match nor set a sampled field.

`scheduler:` stops hopeless trials early: see `kdtune.config.scheduler`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdtune.config.checks import check_keys, did_you_mean
from kdtune.config.scheduler import Scheduler, parse_scheduler
from kdtune.config.space import Search, draws, parse_search, probes, with_sample
from kdtune.config.trial import TRIAL_FIELDS, TrialConfig, default_of, make_trial
from kdtune.errors import UsageError
from kdtune.metrics import DEFAULT_METRIC, METRICS


@dataclass
class Resources:
    cpu: float = 1
    gpu: float = 0


@dataclass
class SweepSpec:
    name: str
    source: str  # the YAML text as given, logged as an artifact
    path: str
    trials: list[TrialConfig]  # known before running: the grid, or its random draws (none for optuna)
    experiment: str
    tracking_uri: str | None = None
    storage: str | None = None
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int = 0  # 0: as many as resources allow
    scheduler: Scheduler | None = None
    max_failures: int = 0
    description: str = ""
    search: Search | None = None
    points: list[TrialConfig] = field(default_factory=list)  # grid points (a search samples around them)
    probes: list[TrialConfig] = field(default_factory=list)  # each point at the extremes of the space
    sampled_teacher: bool = False  # a sampled field changes the teacher: each trial may need its own

    @property
    def metric(self) -> str:
        """The validation metric the sweep compares trials on (one per sweep; `parse_sweep`)."""
        return (self.trials or self.points)[0].metric if (self.trials or self.points) else DEFAULT_METRIC

    @property
    def optuna(self) -> bool:
        return self.search is not None and self.search.algorithm == "optuna"

    @property
    def planned(self) -> int:
        """How many trials the sweep runs in all: the grid, or num_samples per grid point."""
        return len(self.points) * self.search.num_samples if self.optuna else len(self.trials)

    @property
    def varying(self) -> list[str]:
        """The fields that differ between trials: grid axes (as expanded) and sampled fields."""
        keys = [k for k in TRIAL_FIELDS if len({repr(getattr(p, k)) for p in self.points}) > 1]
        return keys + [k for k in (self.search.keys if self.search else []) if k not in keys]

    @property
    def checked(self) -> list[TrialConfig]:
        """What preflight checks: every known trial and every probe of the space."""
        return list({t.config_hash: t for t in [*self.trials, *self.probes]}.values())

    @property
    def teacher_trials(self) -> dict[str, TrialConfig]:
        """One representative trial per distinct teacher the sweep needs and knows before it runs
        (none for an optuna search whose sampled fields change the teacher: trials train their own)."""
        out: dict[str, TrialConfig] = {}
        source = self.trials if not self.optuna else [] if self.sampled_teacher else self.points
        for t in source:
            out.setdefault(t.teacher_key, t)
        return out


SWEEP_KEYS = {
    "name": str,
    "description": str,
    "tracking": dict,
    "storage": str,
    "fixed": dict,
    "grid": dict,
    "overrides": list,
    "resources": dict,
    "max_concurrent": int,
    "scheduler": (dict, type(None)),
    "max_failures": int,
    "space": (dict, type(None)),
    "search": (dict, type(None)),
}
TRACKING_KEYS = {"uri": (str, type(None)), "experiment": str}
RESOURCE_KEYS = {"cpu": (int, float), "gpu": (int, float)}



def load_sweep(path: str | Path, sets: list[str] | tuple[str, ...] = ()) -> SweepSpec:
    """Read, override (`--set key=value`), validate and expand a sweep YAML file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: sweep file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file (byte {exc.start}); a sweep file is YAML text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    for item in sets:
        apply_set(raw, item, path)
    return parse_sweep(raw, text=text, path=str(path))


def apply_set(raw: dict, item: str, path: Path | str) -> None:
    """`fixed.epochs=1` -> raw['fixed']['epochs'] = 1 (value parsed as YAML)."""
    if "=" not in item:
        raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. fixed.epochs=1")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UsageError(f"--set {item!r}: empty key part")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UsageError(f"--set {item!r}: {p} is not a mapping in {path}")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise UsageError(f"--set {item!r}: value is not valid YAML") from None


def parse_sweep(raw: dict, text: str = "", path: str = "<sweep>") -> SweepSpec:
    check_keys(raw, SWEEP_KEYS, path, "")
    name = raw.get("name") or Path(path).stem
    tracking = raw.get("tracking") or {}
    check_keys(tracking, TRACKING_KEYS, path, "tracking.")
    resources = raw.get("resources") or {}
    check_keys(resources, RESOURCE_KEYS, path, "resources.")
    res = Resources(**resources)
    if res.cpu <= 0 or res.gpu < 0:
        raise UsageError(f"{path}: resources: cpu must be > 0 and gpu >= 0, got {resources}")
    scheduler = parse_scheduler(raw.get("scheduler"), path)
    fixed = raw.get("fixed") or {}
    grid = raw.get("grid") or {}
    overrides = raw.get("overrides") or []
    check_trial_keys(fixed, path, "fixed.")
    check_trial_keys(grid, path, "grid.")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"{path}: grid.{key}: expected a non-empty list of values, got {values!r}")
    for i, ov in enumerate(overrides):
        if not isinstance(ov, dict) or set(ov) != {"match", "set"}:
            raise UsageError(f"{path}: overrides[{i}]: expected {{match: {{...}}, set: {{...}}}}")
        check_trial_keys(ov["match"], path, f"overrides[{i}].match.")
        check_trial_keys(ov["set"], path, f"overrides[{i}].set.")

    search = parse_search(raw.get("space"), raw.get("search"), grid, overrides, path)
    points = expand_grid(fixed, grid, overrides, path)
    trials, probed, sampled_teacher = points, [], False
    if search is not None:
        for point in points:
            mine = probes(search, point, path)
            probed += mine
            sampled_teacher |= len({p.teacher_key for p in mine}) > 1
        trials = [] if search.algorithm == "optuna" else sample_grid(search, points, path)
    metrics = sorted({t.metric for t in points})
    if len(metrics) > 1:
        raise UsageError(f"{path}: metric: one sweep compares its trials on one metric (early stopping, the summary); "
                         f"this grid sets {' and '.join(metrics)}: split it into one sweep per metric")
    max_concurrent = raw.get("max_concurrent", 0)
    max_failures = raw.get("max_failures", 0)
    if max_concurrent < 0 or max_failures < 0:
        raise UsageError(f"{path}: max_concurrent and max_failures must be >= 0")
    if scheduler and scheduler.type == "hyperband" and (max_concurrent or (search and search.algorithm == "optuna")):
        # HyperBand fills its brackets with the trials Ray has created; under max_concurrent (or a
        # searcher) Ray creates them one at a time, each bracket holds one trial and none is stopped
        raise UsageError(f"{path}: scheduler.type: hyperband needs every trial created up front: a grid or "
                         f"random search with max_concurrent: 0 (resources: bound how many run at once)"
                         f"{'; use asha or median with optuna' if search and search.algorithm == 'optuna' else ''}")
    return SweepSpec(
        name=str(name),
        source=text,
        path=path,
        trials=trials,
        experiment=tracking.get("experiment") or f"kdtune-{name}",
        tracking_uri=tracking.get("uri"),
        storage=raw.get("storage"),
        resources=res,
        max_concurrent=max_concurrent,
        scheduler=scheduler,
        max_failures=max_failures,
        description=raw.get("description", ""),
        search=search,
        points=points,
        probes=probed,
        sampled_teacher=sampled_teacher,
    )


def sample_grid(search: Search, points: list[TrialConfig], path: str) -> list[TrialConfig]:
    """Random search: every grid point crossed with the same `num_samples` seeded draws, draw-major
    (draw 1 at every point, then draw 2, ...); draws that collapse into one config run once."""
    out: dict[str, TrialConfig] = {}
    for sample in draws(search):
        for point in points:
            trial = with_sample(point, sample, path)
            out.setdefault(trial.config_hash, trial)
    return list(out.values())


def expand_grid(fixed: dict, grid: dict, overrides: list, path: str) -> list[TrialConfig]:
    """Cartesian product of grid axes over fixed values, then matching overrides, in file order."""
    keys = list(grid)
    trials, seen = [], set()
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = {**fixed, **dict(zip(keys, combo))}
        for ov in overrides:
            if all(values.get(k, default_of(k)) == v for k, v in ov["match"].items()):
                values.update(ov["set"])
        sections = {k: "fixed" for k in fixed} | {k: "grid" for k in keys}
        for i, ov in enumerate(overrides):
            sections.update({k: f"overrides[{i}].set" for k in ov["set"]})
        trial = make_trial(values, path, sections)
        if trial.config_hash not in seen:  # e.g. overrides that collapse two grid points
            seen.add(trial.config_hash)
            trials.append(trial)
    return trials


def check_trial_keys(mapping: Any, path: str, prefix: str) -> None:
    if not isinstance(mapping, dict):
        raise UsageError(f"{path}: {prefix.rstrip('.')}: expected a mapping of trial fields")
    for key in mapping:
        if key not in TRIAL_FIELDS:
            raise UsageError(f"{path}: {prefix}{key}: unknown trial field{did_you_mean(key, TRIAL_FIELDS)}")
