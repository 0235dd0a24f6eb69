"""Sampled hyperparameters: the sweep file's `space:` and `search:` sections (pure: no Ray, no Optuna).

    space:                                   # trial field -> one distribution
      lr: {loguniform: [1.0e-5, 1.0e-3]}     # log-uniform on [lo, hi); lo > 0
      warmup_ratio: {uniform: [0.0, 0.2]}    # uniform on [lo, hi)
      eval_steps: {quniform: [50, 200, 50]}  # uniform, then rounded to a multiple of q (as Ray's)
      seed: {randint: [1, 100]}              # an integer in [lo, hi): hi exclusive, as in Ray
      init: {choice: [teacher, base]}        # one of the values, equally likely
    search:
      algorithm: random                      # random | optuna (TPE, through Ray's OptunaSearch)
      num_samples: 20                        # per grid point
      seed: 0                                # the draws' seed (>= 0)
      startup_trials: 10                     # optuna: random trials before TPE models (Optuna's default)

`random`: draw i of field f is a function of (search.seed, i, f) alone (numpy's generator seeded
with the three), so every run of the sweep draws the same values, a trial is matched to its
earlier run by config hash, and raising `num_samples` keeps the earlier draws. The draws are
crossed with the grid: every grid point gets the same `num_samples` draws (paired comparisons).
`optuna`: one TPE study per grid point, `num_samples` trials each (a grid axis is an ablation,
not a hyperparameter: put a `choice` in `space:` to let TPE pick among values).

A sampled value goes through the same coercion and validation as a value written in `fixed:`
(`make_trial`); before any work, every distribution's extreme values (each `choice`) are
validated that way, so a range the field refuses is bad input even if no draw would hit it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

from kdtune.config.checks import check_keys, did_you_mean
from kdtune.config.trial import TRIAL_FIELDS, TrialConfig, field_type, make_trial, stable_hash
from kdtune.errors import UsageError

DISTRIBUTIONS = ("loguniform", "uniform", "quniform", "randint", "choice")
ALGORITHMS = ("random", "optuna")
SEARCH_KEYS = {"algorithm": str, "num_samples": int, "seed": int, "startup_trials": int}
OPTUNA_SCALARS = (type(None), bool, int, float, str)  # what an Optuna categorical holds


@dataclass(frozen=True)
class Dist:
    """One sampled field: `kind` in DISTRIBUTIONS, `args` as written ([lo, hi], [lo, hi, q], the choices)."""

    key: str
    kind: str
    args: tuple

    @property
    def log(self) -> bool:
        return self.kind == "loguniform"

    def draw(self, rng) -> Any:
        """One value, from a numpy Generator, with Ray Tune's semantics for each kind."""
        if self.kind == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        if self.kind == "randint":
            return int(rng.integers(self.args[0], self.args[1]))
        lo, hi = self.args[:2]
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        x = float(rng.uniform(lo, hi))
        return _quantize(x, self.args[2]) if self.kind == "quniform" else x

    def extremes(self) -> list:
        """The values validation must accept: the ends of the range, or every choice."""
        if self.kind == "choice":
            return list(self.args)
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        if self.kind == "quniform":
            return [_quantize(self.args[0], self.args[2]), _quantize(self.args[1], self.args[2])]
        return [self.args[0], self.args[1]]

    def describe(self) -> str:
        return f"{self.kind}({', '.join(repr(a) if isinstance(a, str) else str(a) for a in self.args)})"

    def as_yaml(self) -> dict:
        return {self.kind: list(self.args)}


@dataclass(frozen=True)
class Search:
    algorithm: str
    num_samples: int
    seed: int
    startup_trials: int
    space: tuple[Dist, ...]

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.space]

    def space_yaml(self) -> dict:
        return {d.key: d.as_yaml() for d in self.space}


def _quantize(x: float, q: float) -> float:
    value = round(x / q) * q
    return float(f"{value:.12g}")  # 0.1 * 3 is 0.30000000000000004: keep the value q's grid meant


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: float) -> bool:
    return float(v).is_integer()


def coerce_sample(key: str, value: Any) -> Any:
    """A drawn number into its field's type: a whole float (quniform) into an integer field."""
    if field_type(key)[0] == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_dist(key: str, spec: Any, path: str, algorithm: str) -> Dist:
    where = f"{path}: space.{key}"
    if key not in TRIAL_FIELDS:
        raise UsageError(f"{where}: unknown trial field{did_you_mean(key, TRIAL_FIELDS)}")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UsageError(f"{where}: expected one distribution, e.g. {{loguniform: [1.0e-5, 1.0e-3]}}; "
                         f"allowed: {', '.join(DISTRIBUTIONS)}")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise UsageError(f"{where}: unknown distribution {kind!r}{did_you_mean(kind, DISTRIBUTIONS)}; "
                         f"allowed: {', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise UsageError(f"{where}: choice: expected a non-empty list of values, got {args!r}")
        if algorithm == "optuna":
            odd = [v for v in args if not isinstance(v, OPTUNA_SCALARS)]
            if odd:
                raise UsageError(f"{where}: optuna cannot take choice of {odd[0]!r}; allowed for optuna: choices of "
                                 f"numbers, strings, booleans or null (use algorithm: random, or a grid: axis)")
        return Dist(key, kind, tuple(args))
    n = 3 if kind == "quniform" else 2
    names = "[lo, hi, q]" if n == 3 else "[lo, hi]"
    if not isinstance(args, list) or len(args) != n or not all(_number(a) for a in args):
        raise UsageError(f"{where}: {kind}: expected {names} as numbers, got {args!r}")
    lo, hi = args[0], args[1]
    if lo >= hi:
        raise UsageError(f"{where}: {kind}: lo must be < hi, got {args!r}")
    if kind == "loguniform" and lo <= 0:
        raise UsageError(f"{where}: loguniform: lo must be > 0, got {lo}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise UsageError(f"{where}: randint: expected integers [lo, hi) (hi exclusive), got {args!r}")
    if kind == "quniform" and args[2] <= 0:
        raise UsageError(f"{where}: quniform: q must be > 0, got {args[2]}")
    kind_of_field = field_type(key)[0]
    is_int = kind_of_field == "int"
    if kind_of_field not in ("float", "int"):
        raise UsageError(f"{where}: {kind} draws numbers but {key} is {TRIAL_FIELDS[key].type}; use choice")
    if is_int and kind in ("uniform", "loguniform"):
        raise UsageError(f"{where}: {kind} draws real numbers but {key} is an integer; "
                         f"use randint, quniform with whole numbers, or choice")
    if is_int and kind == "quniform" and not all(_whole(a) for a in args):
        raise UsageError(f"{where}: quniform: {key} is an integer, so lo, hi and q must be whole numbers, got {args!r}")
    if algorithm == "optuna" and kind == "quniform" and not all(_whole(a / args[2]) for a in args[:2]):
        # Optuna steps from lo (lo, lo + q, ...); Ray rounds to multiples of q: the same only then
        raise UsageError(f"{where}: optuna cannot take quniform {args!r}: lo and hi must be multiples of q")
    return Dist(key, kind, tuple(args))


def parse_search(raw_space: Any, raw_search: Any, grid: dict, overrides: list, path: str) -> Search | None:
    """The `space:` and `search:` sections, checked against the grid and overrides; None without them."""
    if not raw_space and not raw_search:
        return None
    if not raw_space:
        raise UsageError(f"{path}: search: nothing to sample; add a space: section (trial field -> distribution)")
    if not isinstance(raw_space, dict):
        raise UsageError(f"{path}: space: expected a mapping of trial fields to distributions")
    raw_search = raw_search if raw_search is not None else {}
    check_keys(raw_search, SEARCH_KEYS, path, "search.")
    algorithm = raw_search.get("algorithm", "random")
    if algorithm not in ALGORITHMS:
        raise UsageError(f"{path}: search.algorithm: {algorithm!r} not allowed; allowed: {', '.join(ALGORITHMS)}")
    if "num_samples" not in raw_search:
        raise UsageError(f"{path}: search.num_samples: required with space: (the draws per grid point)")
    num_samples, seed = raw_search["num_samples"], raw_search.get("seed", 0)
    startup = raw_search.get("startup_trials", 10)
    if num_samples < 1:
        raise UsageError(f"{path}: search.num_samples: must be >= 1, got {num_samples}")
    if seed < 0:
        raise UsageError(f"{path}: search.seed: must be >= 0, got {seed}")
    if startup < 1:
        raise UsageError(f"{path}: search.startup_trials: must be >= 1, got {startup}")
    if "startup_trials" in raw_search and algorithm != "optuna":
        raise UsageError(f"{path}: search.startup_trials: only for algorithm: optuna")
    for key in raw_space:
        if key in grid:
            raise UsageError(f"{path}: space.{key}: also a grid: axis; a field is either swept (grid) or sampled (space)")
    for i, ov in enumerate(overrides):
        for part in ("match", "set"):
            for key in ov.get(part, {}):
                if key in raw_space:
                    raise UsageError(f"{path}: overrides[{i}].{part}.{key}: {key} is sampled (space:); "
                                     f"an override can neither match nor set it")
    space = tuple(parse_dist(str(k), v, path, algorithm) for k, v in raw_space.items())
    return Search(algorithm, num_samples, seed, startup, space)


def draws(search: Search) -> list[dict[str, Any]]:
    """The `num_samples` random draws, each a dict field -> value; draw i depends on (seed, i, field) only."""
    import numpy as np

    out = []
    for i in range(search.num_samples):
        out.append({d.key: coerce_sample(d.key, d.draw(np.random.default_rng([search.seed, i, zlib.crc32(d.key.encode())])))
                    for d in search.space})
    return out


def with_sample(point: TrialConfig, sample: dict[str, Any], path: str = "<sweep>") -> TrialConfig:
    """A grid point with sampled values in place, coerced and validated like any trial field."""
    values = {**point.to_dict(), **{k: coerce_sample(k, v) for k, v in sample.items()}}
    return make_trial(values, path, {k: "space" for k in sample})


def probes(search: Search, point: TrialConfig, path: str) -> list[TrialConfig]:
    """The grid point at every extreme of every distribution (the others at their first extreme):
    validating these validates the whole range (every check on a numeric field is an interval)."""
    base = {d.key: d.extremes()[0] for d in search.space}
    out = []
    for d in search.space:
        for value in d.extremes():
            out.append(with_sample(point, {**base, d.key: value}, path))
    return out


def study_key(trial: TrialConfig, keys: list[str]) -> str:
    """Which grid point a sampled trial belongs to: the hash of its hashed fields but the sampled ones."""
    return stable_hash({k: v for k, v in trial.hashed_fields().items() if k not in keys})


def sampled_values(trial: TrialConfig, keys: list[str]) -> dict[str, Any]:
    d = trial.to_dict()
    return {k: d[k] for k in keys}


def search_name(trial: TrialConfig, keys: list[str] | None) -> str:
    """A sampled trial's run name: its config's, then its sampled values (lr=0.000123,w_att=0.5)."""
    if not keys:
        return trial.run_name
    return f"{trial.run_name}/{sampled_label(sampled_values(trial, keys))}"


def sampled_label(values: dict[str, Any]) -> str:
    """The sampled values as a run name ends with them: lr=0.000123,w_att=0.5."""
    return ",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
