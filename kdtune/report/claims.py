"""The paper's findings as contrasts computed from the report's tables, each judged by one rule.

`claims(tables, figure2)` turns the cells of Tables 2-5 and Figure 2 into `Claim`s; the report
prints them (its Claims section, with `RULE`, the rule below, word for word) and writes
claims.csv. The same rule applies to every sweep and every cell.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from kdtune.report.paper import CLASSES, PAPER_DATASETS, load_paper_numbers
from kdtune.report.records import Cell, init_label
from kdtune.report.table_parts import Table

ALPHA = 0.05
MARGIN = 2.0  # points: a cell this close to chance (or below it) gets no verdict
VERDICTS = ("reproduced", "differs", "not reproduced", "no verdict")
RULE = """\
- Two-cell contrasts (an order, KD's effect): cell A against cell B, seeds as samples. The
  direction is the sign of the paper's own A - B (the paper's text where it prints no number:
  Figure 2). Difference of means in points, its standard error sqrt(sA^2/nA + sB^2/nB), wins
  (pairs of seeds that go the paper's way) and the exact one-sided Mann-Whitney p (scipy) in the paper's
  direction. reproduced: p <= 0.05 that way; differs: p <= 0.05 the other way; not reproduced:
  neither. At 3 seeds a side p <= 0.05 needs all 9 pairs (p = 1/20), the strongest 3 seeds can
  say, so no correction for the number of contrasts could ever pass one; the report says instead
  how many verdicts chance alone would give. No verdict when a cell has one seed, when the seeds
  cannot reach 0.05 at all (3 a side is the least that can; 2 against 4 cannot), or when either
  cell's mean is within 2 points of chance (or below it): a model at chance has no order to compare.
- Size (two-cell contrasts reproduced or not reproduced, with a paper number): in the paper's
  direction, the Welch 95 % interval of our difference holds the paper's (same size), or lies
  above it (larger) or below it (smaller).
- Chance claims (copy-only in Table 5, from-scratch in Tables 3-4): the paper's cell is "at
  chance" when within 2 points of its random row, else "above chance"; ours is above chance when
  every seed is more than 2 points over chance, at chance when its mean is within 2 points of it
  (or below), else mixed. Same category: reproduced; ours above where the paper's is at chance:
  differs; otherwise not reproduced. Copy-only gets no verdict where its teacher is itself within
  2 points of chance: there was nothing to keep.
- Trend (Figure 2, the from-teacher - from-base gap shrinks with data): the gap at the smallest
  fraction minus the gap at the largest, among fractions where neither cell is within 2 points of
  chance; Welch 95 % interval over the four cells: above 0 reproduced, below 0 differs, else not
  reproduced.

Chance, per cell: the higher of the majority-class baseline its runs logged on their test rows
and uniform guessing (100 / classes), in the report's metric.
"""


@dataclass(frozen=True)
class Claim:
    finding: str  # what the paper says, e.g. "from-teacher > from-base"
    where: str  # "Table 2, massive, h384, KD"
    dataset: str
    kind: str  # contrast | chance | trend
    a: str
    b: str
    mean_a: float | None
    mean_b: float | None
    n_a: int
    n_b: int
    diff: float | None  # ours, A - B (chance claims: mean - chance)
    se: float | None
    wins: str  # "9/9" (chance claims: seeds above chance + 2)
    p: float | None  # one-sided, in the paper's direction
    paper_diff: float | None
    chance: float | None
    verdict: str
    size: str  # same size | larger | smaller | "" (not judged)
    why: str  # the reason for "no verdict", or what decided it
    near_chance: bool = False  # a cell within MARGIN of chance: no verdict


def chance_of(dataset: str, *cells: Cell) -> float | None:
    known = [c.majority for c in cells if c.majority is not None]
    if dataset in CLASSES:
        known.append(100.0 / CLASSES[dataset])
    return max(known) if known else None


def paper_chance(dataset: str) -> float | None:
    """The paper's random row (Table 5) for `dataset`."""
    for row in load_paper_numbers()["table5"]["rows"]:
        if row[0] == "random":
            return dict(zip(PAPER_DATASETS, row[1:])).get(dataset)
    return None


def _interval(diff: float, parts: list[tuple[float, int]]) -> tuple[float, float, float]:
    """(se, low, high): Welch 95 % interval of a sum of independent means; parts = (variance, n)."""
    from scipy.stats import t

    terms = [v / n for v, n in parts]
    se = math.sqrt(sum(terms))
    denom = sum(x**2 / (n - 1) for x, (_, n) in zip(terms, parts))
    df = sum(terms) ** 2 / denom if denom > 0 else math.inf
    half = (t.ppf(0.975, df) if math.isfinite(df) else 1.959964) * se
    return se, diff - half, diff + half


# contrast and versus_chance take a claim's row of claims.csv: finding, where, dataset, then its cells
def contrast(finding: str, where: str, dataset: str, a: Cell, b: Cell, labels: tuple[str, str],
             sign: float | None = None) -> Claim | None:
    """A two-cell contrast in the paper's direction (its A - B, or `sign` where it prints none).
    None when a cell has no runs or the paper gives no direction."""
    if not a.values or not b.values:
        return None
    paper_diff = float(a.paper) - float(b.paper) if a.paper is not None and b.paper is not None else None
    direction = sign if sign is not None else (paper_diff if paper_diff else None)
    if direction is None:
        return None
    xa, xb = list(a.values), list(b.values)
    chance = chance_of(dataset, a, b)
    diff = statistics.fmean(xa) - statistics.fmean(xb)
    pairs = len(xa) * len(xb)
    wins = sum((x > y) if direction > 0 else (x < y) for x in xa for y in xb)  # pairs that go the paper's way
    se = p = None
    size, verdict, near = "", "no verdict", False
    if min(len(xa), len(xb)) >= 2:
        se, low, high = _interval(diff, [(statistics.variance(xa), len(xa)), (statistics.variance(xb), len(xb))])
    if min(len(xa), len(xb)) < 2 or 1 / math.comb(len(xa) + len(xb), len(xa)) > ALPHA:
        why = f"too few seeds ({len(xa)} and {len(xb)}: the test cannot reach p {ALPHA})"
    elif chance is not None and min(statistics.fmean(xa), statistics.fmean(xb)) < chance + MARGIN:
        near = True
        why = f"a cell within {MARGIN:g} points of chance ({chance:.1f}) or below it"
    else:
        from scipy.stats import mannwhitneyu

        ours, other = ("greater", "less") if direction > 0 else ("less", "greater")
        p = float(mannwhitneyu(xa, xb, alternative=ours, method="exact").pvalue)
        p_other = float(mannwhitneyu(xa, xb, alternative=other, method="exact").pvalue)
        verdict = "reproduced" if p <= ALPHA else "differs" if p_other <= ALPHA else "not reproduced"
        why = f"one-sided p {p:.3f} the paper's way, {p_other:.3f} the other"
        if paper_diff is not None and verdict != "differs":
            # sizes in the paper's direction, so a larger effect reads "larger" whichever its sign
            sign_ = 1.0 if direction > 0 else -1.0
            low, high = sorted((sign_ * low, sign_ * high))
            size = "same size" if low <= abs(paper_diff) <= high else "larger" if low > abs(paper_diff) else "smaller"
    return Claim(finding, where, dataset, "contrast", labels[0], labels[1], statistics.fmean(xa), statistics.fmean(xb),
                 len(xa), len(xb), diff, se, f"{wins}/{pairs}", p, paper_diff, chance, verdict, size, why, near)


def versus_chance(what: str, where: str, dataset: str, cell: Cell, chance: float | None,
                  needs_teacher: bool = False) -> Claim | None:
    """Is `what` (from-scratch, copy-only) above chance, as the paper's cell is or is not? The
    finding reads the way the paper's cell goes. (`needs_teacher`: a copy of the teacher, judged
    only where the teacher itself is clear of chance.)"""
    paper_random = paper_chance(dataset)
    if not cell.values or chance is None or cell.paper is None or paper_random is None:
        return None
    paper_above = float(cell.paper) >= paper_random + MARGIN
    mean = statistics.fmean(cell.values)
    above = sum(v > chance + MARGIN for v in cell.values)
    ours = "above" if above == len(cell.values) else "at" if mean < chance + MARGIN else "mixed"
    claimed = "above" if paper_above else "at"
    verdict = ("reproduced" if ours == claimed else "differs" if ours == "above" else "not reproduced")
    why = f"the paper's cell is {claimed} chance ({float(cell.paper):g} vs {paper_random:g}); ours is {ours}"
    if needs_teacher and (cell.teacher is None or cell.teacher < chance + MARGIN):
        verdict = "no verdict"  # a copy of a teacher at chance has nothing to keep
        why = f"its teacher is within {MARGIN:g} points of chance or below it (or unknown)"
    return Claim(f"{what} {claimed} chance", where, dataset, "chance", what, f"chance {chance:.1f}", mean, chance, len(cell.values), 0,
                 mean - chance, None, f"{above}/{len(cell.values)}", None, float(cell.paper) - paper_random, chance,
                 verdict, "", why)


def _rows(table: Table) -> dict[tuple[str, ...], dict]:
    return {row.keys: row.cells for row in table.rows if not row.is_teacher}


def _kd(kd: bool | None) -> str:
    return "" if kd is None else (", KD" if kd else ", NON-KD")


ORDERS = (("teacher", "base"), ("base", "scratch"))


def _orders(out: list, where: str, dataset: str, by_init: dict[str, Cell]) -> None:
    for a, b in ORDERS:
        if a in by_init and b in by_init:
            out.append(contrast(f"{init_label(a)} > {init_label(b)}", where, dataset, by_init[a], by_init[b],
                                (init_label(a), init_label(b))))


def _kd_effect(init: str, where: str, dataset: str, cells: dict) -> Claim | None:
    """KD against NON-KD for one init; the finding reads the way the paper's numbers go."""
    kd, plain = cells[(dataset, True)], cells[(dataset, False)]
    hurts = kd.paper is not None and plain.paper is not None and kd.paper < plain.paper
    return contrast(f"KD {'hurts' if hurts else 'helps'} {init_label(init)}", where, dataset, kd, plain, ("KD", "NON-KD"))


def table2_claims(table: Table) -> list[Claim | None]:
    out: list[Claim | None] = []
    rows = _rows(table)
    shapes = sorted({keys[1:] for keys in rows})
    for shape in shapes:
        width = "= teacher" if shape[1] in ("", "None") else f"h{shape[1]}"
        for col in table.columns:
            cells = {init: rows[(init, *shape)][col.key] for init in ("teacher", "base", "scratch") if (init, *shape) in rows}
            _orders(out, f"Table 2, {col.dataset}, {width}{_kd(col.kd)}", col.dataset, cells)
        for init in ("teacher", "base", "scratch"):
            if (init, *shape) in rows:
                for dataset in dict.fromkeys(c.dataset for c in table.columns):
                    out.append(_kd_effect(init, f"Table 2, {dataset}, {width}", dataset, rows[(init, *shape)]))
    return out


def table3_claims(table: Table) -> list[Claim | None]:
    out: list[Claim | None] = []
    rows = _rows(table)
    for train in ("seen", "english"):
        for col in table.columns:
            cells = {k[0]: c[col.key] for k, c in rows.items() if k[1] == train}
            where = f"Table 3, {col.dataset}, trained on {train}{_kd(col.kd)}"
            _orders(out, where, col.dataset, cells)
            if "scratch" in cells:
                out.append(versus_chance(init_label("scratch"), where, col.dataset, cells["scratch"],
                                         chance_of(col.dataset, cells["scratch"])))
        for init in ("teacher", "base", "scratch"):
            key = next((k for k in rows if k[0] == init and k[1] == train), None)
            if key:
                for dataset in dict.fromkeys(c.dataset for c in table.columns):
                    out.append(_kd_effect(init, f"Table 3, {dataset}, trained on {train}", dataset, rows[key]))
    return out


def table4_claims(table: Table) -> list[Claim | None]:
    out: list[Claim | None] = []
    rows = _rows(table)
    for col in table.columns:
        cells = {k[0]: c[col.key] for k, c in rows.items()}
        where = f"Table 4, {col.dataset}, KD, trained on english"
        _orders(out, where, col.dataset, cells)
        if "scratch" in cells:
            out.append(versus_chance(init_label("scratch"), where, col.dataset, cells["scratch"],
                                     chance_of(col.dataset, cells["scratch"])))
    return out


def table5_claims(table: Table) -> list[Claim | None]:
    rows = _rows(table)
    if ("without_finetune",) not in rows:
        return []
    out: list[Claim | None] = []
    for col in table.columns:
        copied = rows[("without_finetune",)][col.key]
        random = rows.get(("random",), {}).get(col.key)
        chance = chance_of(col.dataset, copied, *([Cell(majority=max(random.values))] if random and random.values else []))
        out.append(versus_chance("copy-only", f"Table 5, {col.dataset}", col.dataset, copied, chance, needs_teacher=True))
    return out


def figure2_claims(panels) -> list[Claim | None]:
    """Per fraction: from-teacher > from-base (the paper's Figure 2); and the gap shrinking with data."""
    out: list[Claim | None] = []
    for panel in panels:
        teacher, base = dict(panel.curves.get("teacher", [])), dict(panel.curves.get("base", []))
        usable = []
        for fraction in sorted(set(teacher) & set(base)):
            claim = contrast("from-teacher > from-base", f"Figure 2, {panel.dataset}, {100 * fraction:g} % of the data",
                             panel.dataset, teacher[fraction], base[fraction], ("from-teacher", "from-base"), sign=1.0)
            out.append(claim)
            if claim and not claim.near_chance and min(claim.n_a, claim.n_b) >= 2:
                usable.append(fraction)
        out.append(_trend(panel.dataset, usable, teacher, base))
    return out


def _trend(dataset: str, fractions: list[float], teacher: dict, base: dict) -> Claim | None:
    finding, where = "the from-teacher - from-base gap shrinks with data", f"Figure 2, {dataset}"
    if len(fractions) < 2:
        return None
    lo, hi = fractions[0], fractions[-1]
    cells = [teacher[lo], base[lo], teacher[hi], base[hi]]
    gap_lo = statistics.fmean(cells[0].values) - statistics.fmean(cells[1].values)
    gap_hi = statistics.fmean(cells[2].values) - statistics.fmean(cells[3].values)
    diff = gap_lo - gap_hi
    se, low, high = _interval(diff, [(statistics.variance(c.values), c.n) for c in cells])
    verdict = "reproduced" if low > 0 else "differs" if high < 0 else "not reproduced"
    return Claim(finding, where, dataset, "trend", f"gap at {100 * lo:g} %", f"gap at {100 * hi:g} %", gap_lo, gap_hi,
                 min(cells[0].n, cells[1].n), min(cells[2].n, cells[3].n), diff, se, "", None, None,
                 chance_of(dataset, *cells), verdict, "", f"Welch 95 % interval {low:+.1f} to {high:+.1f}")


def claims(tables: list[Table], figure2=()) -> list[Claim]:
    """Every testable finding of the paper in these tables and Figure 2 panels, judged."""
    builders = {"table2": table2_claims, "table3": table3_claims, "table4": table4_claims, "table5": table5_claims}
    out = [c for t in tables if t.name in builders for c in builders[t.name](t) if c is not None]
    # Figure 2's point at the tables' fraction is a table's cell pair again: count it once
    listed = {_cells(c) for c in out}
    out += [c for c in figure2_claims(figure2) if c is not None and (c.kind != "contrast" or _cells(c) not in listed)]
    return out


def _cells(c: Claim) -> tuple:
    """What identifies a contrast's two cells (their seeds' means and counts)."""
    return (c.dataset, c.a, c.b, round(c.mean_a or 0, 9), round(c.mean_b or 0, 9), c.n_a, c.n_b)
