"""Optuna search: one TPE study (Ray's OptunaSearch) per grid point, rebuilt from what MLflow holds.

A resumed search does not depend on Ray's experiment folder: `plan.plan_search` reads the
finished, failed and early-stopped trials of each grid point back from MLflow, and each study
is told them (`add_evaluated_point`) before it suggests anything; trials a killed driver left
unfinished are enqueued (`points_to_evaluate`) so they are the first suggestions, keep their
config hash and resume from their checkpoints. A study suggests at most its `left` trials, so
restarts never add trials beyond `num_samples`; a suggestion whose config already ran (TPE
can repeat itself in a discrete space) is told its known score and asked again instead.
"""

from __future__ import annotations

from typing import Any, Callable

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from kdtune.config import Search, TrialConfig, coerce_sample, with_sample
from kdtune.errors import UsageError
from kdtune.sweep.plan import StudyPlan

MAX_REPEATS = 25  # suggestions in a row that all ran already: the space is used up


def ray_space(search: Search) -> dict[str, Any]:
    """The space as Ray Tune domains (OptunaSearch converts them to Optuna distributions)."""
    make = {"loguniform": tune.loguniform, "uniform": tune.uniform, "quniform": tune.quniform,
            "randint": tune.randint}
    return {d.key: tune.choice(list(d.args)) if d.kind == "choice" else make[d.kind](*d.args) for d in search.space}


def make_searcher(search: Search, plan: StudyPlan, metric: str) -> OptunaSearch:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup_trials)
    space = OptunaSearch.convert_search_space(ray_space(search))  # Ray's conversion, done here: no warning
    searcher = OptunaSearch(space=space, metric=metric, mode="max",
                            points_to_evaluate=[dict(p) for p in plan.resume] or None, sampler=sampler)
    told = [(sample, value, False) for sample, value in plan.told] + [(sample, 0.0, True) for sample in plan.failed]
    for sample, value, failed in told:
        try:
            searcher.add_evaluated_point(dict(sample), value, error=failed)
        except ValueError:  # drawn from another space (the file's space changed since): not this study's
            pass
    return searcher


class Study:
    """One grid point's searcher and what it may still suggest in this run."""

    def __init__(self, search: Search, point: TrialConfig, plan: StudyPlan, metric: str):
        self.point, self.metric, self.keys = point, metric, search.keys
        self.searcher = make_searcher(search, plan, metric)
        self.left = plan.left
        self.known: dict[str, float | None] = dict(plan.known)  # config hash -> score (None: no score)
        self.live: set[str] = set()
        self.exhausted = False
        self.short = 0  # trials it could not suggest: every suggestion had run already

    def next(self, trial_id: str) -> tuple[TrialConfig, str] | None:
        """The next trial to run and the searcher's id for it; None once it has suggested `left`."""
        while self.left > 0:
            for attempt in range(MAX_REPEATS):
                inner = f"{trial_id}.{attempt}"
                sample = {k: coerce_sample(k, v) for k, v in self.searcher.suggest(inner).items()}
                try:
                    trial = with_sample(self.point, sample)
                except UsageError:  # a combination of values no probe covered: a failed trial
                    self.searcher.on_trial_complete(inner, None, error=True)
                    continue
                h = trial.config_hash
                if h in self.live or h in self.known:  # ran, or runs now: tell TPE, ask again
                    score = self.known.get(h)
                    self.searcher.on_trial_complete(inner, None if score is None else {self.metric: score})
                    continue
                self.left -= 1
                self.live.add(h)
                return trial, inner
            self.short, self.left, self.exhausted = self.short + self.left, 0, True
        return None

    def complete(self, inner: str, config_hash: str, result: dict | None, error: bool) -> None:
        self.searcher.on_trial_complete(inner, result, error=error)
        self.live.discard(config_hash)
        self.known[config_hash] = None if error or not result else result.get(self.metric)


class PerPoint(Searcher):
    """Ray Tune searcher over the studies: each suggestion from the study with the fewest handed out."""

    def __init__(self, studies: list[Study], metric: str, say: Callable[[str], None]):
        super().__init__(metric=metric, mode="max")
        self.studies, self.say = studies, say
        self.owner: dict[str, tuple[Study, str, str]] = {}  # Ray trial id -> (study, inner id, config hash)
        self.handed = [0] * len(studies)
        self.suggested: list[str] = []  # config hashes, in order

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # set up in __init__

    def suggest(self, trial_id: str):
        order = sorted(range(len(self.studies)), key=lambda i: (self.handed[i], i))
        for i in order:
            study = self.studies[i]
            got = study.next(trial_id)
            if got is None:
                if study.exhausted:
                    study.exhausted = False  # say it once
                    self.say(f"  study {i + 1}: every suggestion already ran (the space is used up); it ends short")
                continue
            trial, inner = got
            self.handed[i] += 1
            self.owner[trial_id] = (study, inner, trial.config_hash)
            self.suggested.append(trial.config_hash)
            return {"trial": trial.to_dict()}
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.owner:
            study, inner, config_hash = self.owner.pop(trial_id)
            study.complete(inner, config_hash, result, error)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a search is rebuilt from MLflow (`plan.plan_search`), not from Ray's folder."""

    def restore(self, checkpoint_path: str) -> None:
        """See `save`."""

    @property
    def total_left(self) -> int:
        return sum(s.left for s in self.studies)
