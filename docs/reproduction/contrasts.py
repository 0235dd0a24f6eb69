"""The contrasts quoted in docs/reproduction.md, computed from a committed per-seed runs.csv.

    python docs/reproduction/contrasts.py docs/reproduction/minilm/runs.csv [--metric test_macro_f1]

runs.csv is `kdtune report`'s one-row-per-FINISHED-trial file, so every claim on the page can be
checked from the repository, without the MLflow store that produced it. For each comparison the
paper's findings rest on, this prints the difference of mean scores (F1 points), its standard
error sqrt(s1^2/n1 + s2^2/n2), in how many (seed of A, seed of B) pairs A won, and "near chance"
when either side's mean is within 2 points of chance (no verdict is drawn from such a pair).

Chance, per dataset and metric: the better of the majority-class baseline (the run's own
`majority_test_*`, computed on its test rows) and uniform random guessing (about 1/K of the
classes for both macro-F1 and accuracy: 1.7 % for MASSIVE's 60 intents, 33.3 % for tsm's 3).
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
from collections import defaultdict

CLASSES = {"massive": 60, "tsm": 3}
SETTING = ("dataset", "train_partition", "eval_partition", "teacher_partition", "languages", "fraction", "epochs")
INITS = ("teacher", "base", "scratch")


def load(path: str, metric: str) -> tuple[dict, dict]:
    """cells[setting][(hidden, kd, init)] -> {seed: score %}; chance[setting] -> chance level %."""
    cells: dict = defaultdict(lambda: defaultdict(dict))
    majority: dict = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not row.get(metric):
                continue
            setting = tuple(row[k] for k in SETTING)
            cells[setting][(row["hidden"], row["kd"], row["init"])][row["seed"]] = 100 * float(row[metric])
            base = metric.replace("test_", "majority_test_", 1)
            if row.get(base):
                majority[setting].append(100 * float(row[base]))
    chance = {s: max(max(majority.get(s, [0.0])), 100 / CLASSES.get(s[0], 1e9)) for s in cells}
    return cells, chance


def stat(v: list[float]) -> str:
    if not v:
        return "n=0"
    sd = f" ± {statistics.stdev(v):4.1f}" if len(v) > 1 else ""
    return f"{statistics.fmean(v):5.1f}{sd} (n={len(v)})"


def contrast(label: str, a: list[float], b: list[float], chance: float) -> None:
    if len(a) < 2 or len(b) < 2:
        print(f"    {label}: not enough seeds ({len(a)}, {len(b)})")
        return
    d = statistics.fmean(a) - statistics.fmean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    wins = sum(x > y for x in a for y in b)
    near = min(statistics.fmean(a), statistics.fmean(b)) < chance + 2
    print(f"    {label}: {d:+6.1f} ± {se:4.1f}; A>B in {wins}/{len(a) * len(b)} pairs"
          + ("   [near chance: no verdict]" if near else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_csv")
    ap.add_argument("--metric", default="test_macro_f1", help="a score column of runs.csv (default: %(default)s)")
    args = ap.parse_args()
    cells, chance = load(args.runs_csv, args.metric)
    for setting in sorted(cells):
        group = cells[setting]
        c = chance[setting]
        print(f"\n== {dict(zip(SETTING, setting))}\n   {args.metric}, chance {c:.1f}")
        for key in sorted(group, key=lambda k: (-int(k[0]), k[1], INITS.index(k[2]) if k[2] in INITS else 9)):
            print(f"    h{key[0]:<4} kd={key[1]:5} {key[2]:8} {stat(list(group[key].values()))}")
        scores = lambda h, kd, init: list(group.get((h, kd, init), {}).values())  # noqa: E731
        hiddens = sorted({k[0] for k in group}, key=int, reverse=True)
        kds = sorted({k[1] for k in group})
        for h in hiddens:
            for kd in kds:
                for a, b in (("teacher", "base"), ("base", "scratch"), ("teacher", "scratch")):
                    contrast(f"h{h} kd={kd:5} {a} - {b}", scores(h, kd, a), scores(h, kd, b), c)
            if len(kds) == 2:
                for init in INITS:
                    contrast(f"h{h} {init:8} KD - NON-KD", scores(h, kds[1], init), scores(h, kds[0], init), c)
        if len(hiddens) == 2:
            for init in INITS:
                for kd in kds:
                    contrast(f"{init:8} kd={kd:5} h{hiddens[0]} - h{hiddens[1]}",
                             scores(hiddens[0], kd, init), scores(hiddens[1], kd, init), c)


if __name__ == "__main__":
    main()
