"""The contrasts quoted in docs/reproduction.md, from the runs of experiment kdtune-tiny.

    python docs/reproduction/contrasts.py [TRACKING_URI]     # default: the local store ./mlruns

For each comparison the paper's findings rest on: the difference of mean test macro-F1 (points),
its standard error sqrt(s1^2/n1 + s2^2/n2), and in how many (seed of A, seed of B) pairs A won.
"""
import math
import statistics
import sys
from pathlib import Path
from collections import defaultdict

from kdtune.tracking.query import fetch_trials

URI = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"
recs = [r for r in fetch_trials(URI, ["kdtune-tiny"]) if r.status == "FINISHED"]
print(f"{len(recs)} FINISHED trials", file=sys.stderr)


def p(r, k):
    return r.params.get(k)


def key(r):
    return (p(r, "dataset"), p(r, "train_partition"), p(r, "eval_partition"), p(r, "teacher_partition"),
            p(r, "fraction"), p(r, "init"), p(r, "hidden"), p(r, "kd"), p(r, "epochs"))


cells = defaultdict(dict)
teacher = {}
for r in sorted(recs, key=lambda r: r.start_time):
    cells[key(r)][p(r, "seed")] = 100 * r.metrics["test_f1"]
    if "teacher_test_f1" in r.metrics:
        teacher[(p(r, "dataset"), p(r, "teacher_partition"), p(r, "eval_partition"))] = 100 * r.metrics["teacher_test_f1"]


def vals(**kw):
    out = []
    for k, v in cells.items():
        d = dict(zip(("dataset", "train", "eval", "teacher", "fraction", "init", "hidden", "kd", "epochs"), k))
        if all(d[a] == b for a, b in kw.items()):
            out += list(v.values())
    return out


def stat(v):
    if not v:
        return "n=0"
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    return f"{statistics.fmean(v):5.1f} ± {sd:4.1f} (n={len(v)})"


def contrast(label, a, b):
    if len(a) < 2 or len(b) < 2:
        print(f"  {label}: not enough runs ({len(a)}, {len(b)})")
        return
    d = statistics.fmean(a) - statistics.fmean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    wins = sum(x > y for x in a for y in b)
    print(f"  {label}: {d:+6.1f} ± {se:4.1f} (diff/se {d / se if se else float('inf'):+5.1f}); "
          f"A>B in {wins}/{len(a) * len(b)} pairs")


for k, v in sorted(teacher.items()):
    print("teacher", k, f"{v:.1f}")
for ds, frac in (("massive", "0.1"),):
    print(f"\n== Table 2 {ds} (fraction {frac})")
    base = dict(dataset=ds, train="all", eval="all", teacher="None", fraction=frac, epochs="3.0")
    for hidden in ("128", "64"):
        for kd in ("False", "True"):
            for init in ("teacher", "base", "scratch"):
                print(f"  h{hidden} kd={kd:5} {init:8} {stat(vals(**base, hidden=hidden, kd=kd, init=init))}")
    for hidden in ("128", "64"):
        for kd in ("False", "True"):
            g = lambda i: vals(**base, hidden=hidden, kd=kd, init=i)  # noqa: E731
            contrast(f"h{hidden} kd={kd} teacher - base ", g("teacher"), g("base"))
            contrast(f"h{hidden} kd={kd} base - scratch", g("base"), g("scratch"))
        for init in ("teacher", "base", "scratch"):
            contrast(f"h{hidden} {init:8} KD - NON-KD  ", vals(**base, hidden=hidden, kd="True", init=init),
                     vals(**base, hidden=hidden, kd="False", init=init))
    for init in ("teacher", "base", "scratch"):
        for kd in ("False", "True"):
            contrast(f"{init:8} kd={kd} h128 - h64", vals(**base, hidden="128", kd=kd, init=init),
                     vals(**base, hidden="64", kd=kd, init=init))
    print(f"  Table 5 copy-only: {stat(vals(dataset=ds, init='teacher', epochs='0.0'))}")
print(f"  Table 5 copy-only tsm: {stat(vals(dataset='tsm', init='teacher', epochs='0.0'))}")
for ds, frac in (("massive", "0.1"),):
    print(f"\n== Table 3 {ds}")
    for train in ("seen", "english"):
        base = dict(dataset=ds, train=train, eval="unseen", teacher="seen", fraction=frac, hidden="128")
        for kd in ("False", "True"):
            for init in ("teacher", "base", "scratch"):
                print(f"  {train:7} kd={kd:5} {init:8} {stat(vals(**base, kd=kd, init=init))}")
        for kd in ("False", "True"):
            g = lambda i: vals(**base, kd=kd, init=i)  # noqa: E731
            contrast(f"{train} kd={kd} teacher - base ", g("teacher"), g("base"))
            contrast(f"{train} kd={kd} base - scratch", g("base"), g("scratch"))
        for init in ("teacher", "base", "scratch"):
            contrast(f"{train} {init:8} KD - NON-KD", vals(**base, kd="True", init=init), vals(**base, kd="False", init=init))
print("\n== Figure 2 massive (KD, h128)")
for frac in ("0.01", "0.05", "0.1", "0.2"):
    base = dict(dataset="massive", train="all", eval="all", fraction=frac, hidden="128", kd="True", epochs="3.0")
    for init in ("teacher", "base", "scratch"):
        print(f"  {frac:5} {init:8} {stat(vals(**base, init=init))}")
    contrast(f"{frac} teacher - base ", vals(**base, init="teacher"), vals(**base, init="base"))
    contrast(f"{frac} teacher - scratch", vals(**base, init="teacher"), vals(**base, init="scratch"))
    contrast(f"{frac} base - scratch   ", vals(**base, init="base"), vals(**base, init="scratch"))
