"""Figures 2 and 3 and the per-language heat map: data selection (pure) and PNG drawing (matplotlib).

Run group for both figures (paper section 4: KD, the section 3.2 setup, full hidden size): train,
test and teacher data all languages, KD, epochs > 0, full-width students, any data fraction.
- Figure 2: the report's test metric (macro-F1 unless `metric` says micro-F1; percent) against the fraction of training data (percent, log axis),
  one line per init, error bars = sample std over seeds; one panel per dataset with >= 2 fractions.
- Figure 3: training loss against optimizer step, one line per init (mean over seeds, band = min
  to max over seeds), one panel per (dataset, fraction); long curves are smoothed with a moving
  average whose window the axis label states.

matplotlib is optional (`pip install 'kdtune[report]'`): it is imported inside the drawing
functions, with the Agg canvas directly (no pyplot, no global backend switch).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kdtune.report.languages import LanguageTable
from kdtune.report.records import (
    Cell,
    group_by,
    init_label,
    init_sort_key,
    is_trained,
    only_full_width,
    param,
    param_bool,
    param_float,
    seed_cell,
    setup_matches,
)
from kdtune.tracking.query import TrialRecord

History = dict[str, list[tuple[int, float]]]
INIT_STYLE = {  # colour-blind-safe (Okabe-Ito) and distinct markers, fixed per init
    "teacher": ("#0072B2", "o"),
    "base": ("#E69F00", "s"),
    "scratch": ("#009E73", "^"),
}
DPI = 120


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def figure_runs(trials: list[TrialRecord]) -> list[TrialRecord]:
    """KD, all-languages, trained, full-width runs at any fraction (the paper's section 4 setup)."""
    sel = [
        r
        for r in trials
        if setup_matches(r, "all", "all", "all") and param_bool(r, "kd") is True and is_trained(r)
        and param_float(r, "fraction") is not None
    ]
    return only_full_width(sel)


@dataclass
class FractionCurves:
    dataset: str
    # init -> [(fraction in (0, 1], cell over seeds)] sorted by fraction
    curves: dict[str, list[tuple[float, Cell]]]

    @property
    def fractions(self) -> list[float]:
        return sorted({f for points in self.curves.values() for f, _ in points})


def fraction_curves(trials: list[TrialRecord]) -> list[FractionCurves]:
    """Figure 2 data per dataset (only datasets with at least two fractions)."""
    out = []
    for (dataset,), runs in sorted(group_by(figure_runs(trials), lambda r: (param(r, "dataset") or "?",)).items()):
        curves: dict[str, list[tuple[float, Cell]]] = {}
        for (init, fraction), cell_runs in group_by(runs, lambda r: (param(r, "init") or "?", param_float(r, "fraction"))).items():
            cell, _ = seed_cell(cell_runs)
            if cell.n:
                curves.setdefault(init, []).append((fraction, cell))
        curves = {k: sorted(v, key=lambda p: p[0]) for k, v in sorted(curves.items(), key=lambda kv: init_sort_key(kv[0]))}
        data = FractionCurves(dataset, curves)
        if len(data.fractions) >= 2:
            out.append(data)
    return out


def loss_groups(trials: list[TrialRecord]) -> dict[tuple[str, float], dict[str, list[str]]]:
    """Figure 3 runs: (dataset, fraction) -> init -> run ids (latest run per seed)."""
    out: dict[tuple[str, float], dict[str, list[str]]] = {}
    runs = figure_runs(trials)
    for (dataset, fraction, init), group in group_by(
        runs, lambda r: (param(r, "dataset") or "?", param_float(r, "fraction"), param(r, "init") or "?")
    ).items():
        latest: dict[str, TrialRecord] = {}
        for rec in sorted(group, key=lambda r: (r.start_time, r.run_id)):
            latest[param(rec, "seed") or rec.run_id] = rec
        out.setdefault((dataset, fraction), {})[init] = [r.run_id for r in latest.values()]
    return dict(sorted(out.items()))


def mean_curve(histories: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, min and max over runs at each step any run logged (finite values only)."""
    by_step: dict[int, list[float]] = {}
    for history in histories:
        for step, value in history:
            if math.isfinite(value):
                by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    return (
        steps,
        [statistics.fmean(by_step[s]) for s in steps],
        [min(by_step[s]) for s in steps],
        [max(by_step[s]) for s in steps],
    )


def smoothing_window(n_points: int) -> int:
    """About 60 independent points per curve: window 1 up to 120 points, then n/60."""
    return 1 if n_points <= 120 else max(1, n_points // 60)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (shorter at the start)."""
    if window <= 1:
        return list(values)
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _percent_label(fraction: float) -> str:
    pct = 100.0 * fraction
    return f"{pct:g}%"


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(init: str) -> tuple[str | None, str]:
    return INIT_STYLE.get(init, (None, "D"))


def draw_figure2(data: list[FractionCurves], path: Path, context: str, metric: str = "macro-F1") -> Path:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig = _new_figure(5.2 * len(data), 4.2)
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    for ax, panel in zip(axes, data):
        for init, points in panel.curves.items():
            colour, marker = _style(init)
            xs = [100.0 * f for f, _ in points]
            ys = [c.mean for _, c in points]
            errs = [c.std or 0.0 for _, c in points]
            seeds = sorted({c.n for _, c in points})
            n_text = f"n={seeds[0]}" if len(seeds) == 1 else f"n={seeds[0]}-{seeds[-1]}"
            ax.errorbar(xs, ys, yerr=errs, color=colour, marker=marker, capsize=4, linewidth=1.6,
                        label=f"{init_label(init)} ({n_text} seeds)")
        ticks = [100.0 * f for f in panel.fractions]
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}%"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(min(ticks) / 1.4, max(ticks) * 1.4)
        ax.set_xlabel("training data used (% of the training split, log scale)")
        ax.set_ylabel(f"test {metric} (%)")
        ax.set_title(f"{panel.dataset}: test F1 vs training data size")
        ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]))  # F1 is never negative
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8, title="init (error bars: ±1 std)", title_fontsize=8)
    fig.suptitle(f"Figure 2: test {metric} vs amount of training data\n{context}", fontsize=10)
    fig.savefig(path, dpi=DPI)
    return path


def draw_figure3(
    groups: dict[tuple[str, float], dict[str, list[str]]], history: History, path: Path, context: str
) -> Path | None:
    """One panel per (dataset, fraction): datasets as rows, fractions as columns. None if no data."""
    panels = {k: v for k, v in groups.items() if any(history.get(rid) for ids in v.values() for rid in ids)}
    if not panels:
        return None
    # Rows: datasets with a logged loss; columns: that dataset's fractions (a row may be shorter).
    datasets = sorted({d for d, _ in panels})
    fractions = {d: sorted(f for dd, f in panels if dd == d) for d in datasets}
    n_cols = max(len(f) for f in fractions.values())
    fig = _new_figure(max(3.7 * n_cols, 5.5), 3.5 * len(datasets) + 0.4)
    # One loss scale per dataset row, so the gap between inits compares across fractions.
    axes = fig.subplots(len(datasets), n_cols, squeeze=False, sharey="row")
    for i, dataset in enumerate(datasets):
        for j in range(n_cols):
            ax = axes[i][j]
            if j >= len(fractions[dataset]):
                ax.set_visible(False)
                continue
            fraction = fractions[dataset][j]
            by_init = panels[(dataset, fraction)]
            ax.set_title(f"{dataset}, {_percent_label(fraction)} of training data", fontsize=10)
            windows = set()
            for init in sorted(by_init, key=init_sort_key):
                runs = [history.get(rid, []) for rid in by_init[init]]
                runs = [h for h in runs if h]
                if not runs:
                    continue
                steps, mean, low, high = mean_curve(runs)
                window = smoothing_window(len(steps))
                windows.add(window)
                colour, _ = _style(init)
                ax.plot(steps, moving_average(mean, window), color=colour, linewidth=1.5,
                        label=f"{init_label(init)} (n={len(runs)})")
                if len(runs) > 1:
                    ax.fill_between(steps, moving_average(low, window), moving_average(high, window),
                                    color=colour, alpha=0.18, linewidth=0)
            smooth = "" if windows <= {1} else f" (curves: moving avg. over {max(windows)} steps)"
            ax.set_xlabel(f"optimizer step{smooth}", fontsize=9)
            if j == 0:
                ax.set_ylabel("training loss (KD + CE)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Figure 3: training loss per step (band: min to max over seeds)\n{context}", fontsize=10)
    fig.savefig(path, dpi=DPI)
    return path


def draw_languages(table: LanguageTable, path: Path, context: str, metric: str = "macro-F1") -> Path:
    """Heat map of per-language F1 (rows: languages by gain, columns: inits) + a gain bar chart."""
    import numpy as np

    languages = table.languages()
    inits = table.inits
    grid = np.array([[table.mean(lang, init) if table.mean(lang, init) is not None else np.nan for init in inits]
                     for lang in languages], dtype=float)
    height = max(3.0, 0.24 * len(languages) + 1.6)
    has_gain = any(table.gain(lang) is not None for lang in languages)
    fig = _new_figure(4.0 + 1.1 * len(inits) + (3.0 if has_gain else 0.0), height)
    axes = fig.subplots(1, 2 if has_gain else 1, squeeze=False, sharey=True,
                        gridspec_kw={"width_ratios": [max(1, len(inits)), 2.2]} if has_gain else None)[0]
    ax = axes[0]
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=np.nanmin(grid), vmax=np.nanmax(grid))
    ax.set_xticks(range(len(inits)), [init_label(i) for i in inits], rotation=20, ha="right")
    marked = set(table.marked)
    ax.set_yticks(range(len(languages)), [f"{lang} ▲" if lang in marked else lang for lang in languages],
                  fontsize=8 if len(languages) > 20 else 9)
    small = len(languages) > 20
    if len(languages) * len(inits) <= 400:
        threshold = np.nanmean(grid)
        for r in range(len(languages)):
            for c in range(len(inits)):
                if not np.isnan(grid[r, c]):
                    ax.text(c, r, f"{grid[r, c]:.1f}", ha="center", va="center", fontsize=6.5 if small else 8,
                            color="white" if grid[r, c] < threshold else "black")
    fig.colorbar(image, ax=ax, label=f"test {metric} (%)", fraction=0.08, pad=0.02, aspect=30,
                 shrink=0.6 if len(languages) > 12 else 1.0)
    ax.set_title(f"per-language test {metric} (%)", fontsize=10)
    if has_gain:
        gains = [table.gain(lang) if table.gain(lang) is not None else np.nan for lang in languages]
        colours = ["#0072B2" if lang in marked else "#9BB8D3" for lang in languages]
        axes[1].barh(range(len(languages)), gains, color=colours)
        axes[1].axvline(0.0, color="black", linewidth=0.8)
        axes[1].set_xlabel(f"{init_label('teacher')} − {init_label(table.baseline or '')} (F1 points)")
        axes[1].set_title("gain from copying the teacher\n(▲: largest gains)", fontsize=10)
        axes[1].grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{table.dataset}: per-language F1, {context}", fontsize=11)
    fig.savefig(path, dpi=DPI)
    return path


HistoryFn = Callable[[list[str], str], History]
