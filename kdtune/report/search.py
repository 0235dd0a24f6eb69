"""The report's search section: for each sweep that sampled fields (`space:`), its top trials and
a PNG of the validation metric against each sampled field (log axis for `loguniform`).

Works on FINISHED trial records that carry the `kdtune.sampled` tag (their sampled values, JSON)
and `kdtune.space` (the sweep's distributions); pure but for the drawing (matplotlib, optional).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from kdtune.metrics import DEFAULT_METRIC, best_metric, heldout_metric
from kdtune.tracking.query import TrialRecord
from kdtune.tracking.tags import SAMPLED, SPACE, SWEEP

TOP_K = 10


@dataclass
class SearchGroup:
    sweep: str
    space: dict[str, dict]  # field -> {distribution: [args]}
    runs: list[TrialRecord] = field(default_factory=list)  # best first
    metric: str = DEFAULT_METRIC

    @property
    def fields(self) -> list[str]:
        return list(self.space)

    def val(self, rec: TrialRecord) -> float:
        return rec.metrics.get(best_metric(self.metric), float("nan"))

    def sampled(self, rec: TrialRecord) -> dict:
        return json.loads(rec.tags[SAMPLED])

    @property
    def safe(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.sweep).strip("_") or "sweep"


def search_groups(used: list[TrialRecord], metric: str) -> list[SearchGroup]:
    """One group per sweep with sampled trials; runs ranked by best validation `metric`."""
    groups: dict[str, SearchGroup] = {}
    for rec in used:
        if SAMPLED not in rec.tags or best_metric(metric) not in rec.metrics:
            continue
        name = rec.tags.get(SWEEP, "?")
        group = groups.setdefault(name, SearchGroup(name, json.loads(rec.tags.get(SPACE, "{}")), metric=metric))
        group.runs.append(rec)
    for group in groups.values():
        group.runs.sort(key=lambda r: (-group.val(r), r.start_time))
        if not group.space:  # an old tag set: the sampled fields, distributions unknown
            group.space = {k: {} for k in group.sampled(group.runs[0])}
    return [groups[k] for k in sorted(groups)]


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def top_markdown(group: SearchGroup, k: int = TOP_K) -> str:
    m = group.metric
    head = f"| # | run | val {m} | test {m} | " + " | ".join(group.fields) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(group.fields)]
    for i, rec in enumerate(group.runs[:k], 1):
        values = group.sampled(rec)
        test = rec.metrics.get(heldout_metric(m))
        lines.append(f"| {i} | `{rec.run_id[:8]}` | {group.val(rec):.4f} | {'-' if test is None else f'{test:.4f}'} | "
                     + " | ".join(_cell(values.get(f, "-")) for f in group.fields) + " |")
    return "\n".join(lines)


def write_csv(group: SearchGroup, path: Path) -> Path:
    m = group.metric
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "run_id", "run_name", best_metric(m), heldout_metric(m), *group.fields])
        for i, rec in enumerate(group.runs, 1):
            values = group.sampled(rec)
            writer.writerow([i, rec.run_id, rec.run_name, group.val(rec), rec.metrics.get(heldout_metric(m), ""),
                             *(values.get(f, "") for f in group.fields)])
    return path


def draw(group: SearchGroup, path: Path) -> Path:
    """One panel per sampled field: the validation metric of each finished trial against its value."""
    from kdtune.report.figures import _new_figure

    n = len(group.fields)
    fig = _new_figure(3.2 * n, 3.0)
    axes = fig.subplots(1, n, squeeze=False)[0]
    ys = [100 * group.val(r) for r in group.runs]
    for ax, name in zip(axes, group.fields):
        values = [group.sampled(r).get(name) for r in group.runs]
        kind = next(iter(group.space.get(name) or {"": None}))
        numeric = kind != "choice" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            ax.scatter(values, ys, s=18, color="#0072B2")
            if kind == "loguniform":
                ax.set_xscale("log")
        else:  # categories, in the order the space lists them
            order = [json.dumps(c) for c in (group.space.get(name) or {}).get("choice", [])]
            labels = list(dict.fromkeys(order + [json.dumps(v) for v in values]))
            ax.scatter([labels.index(json.dumps(v)) for v in values], ys, s=18, color="#0072B2")
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(values[:1] if numeric else [labels.index(json.dumps(values[0]))], ys[:1], s=60,
                   facecolors="none", edgecolors="#D55E00", label="best")
        ax.set_xlabel(name + (" (log)" if kind == "loguniform" else ""))
        ax.set_ylabel(f"best val {group.metric} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{group.sweep}: {len(group.runs)} finished trials", fontsize=10)
    fig.savefig(path, dpi=120)
    return path


def section(group: SearchGroup, png: Path | None, csv_path: Path | None) -> list[str]:
    space = "; ".join(f"{k} ~ {next(iter(v), '?')}{list(v.values())[0] if v else ''}" for k, v in group.space.items())
    lines = [f"## Search: {group.sweep}", "", f"{len(group.runs)} finished trials sampled from: {space}. "
             f"Top {min(TOP_K, len(group.runs))} by best validation {group.metric} (test scores for reference only: "
             "choose on validation).", "", top_markdown(group), ""]
    if png:
        lines += [f"![{group.sweep}: validation {group.metric} against each sampled field]({png.name})", ""]
    if csv_path:
        lines += [f"Every finished trial: [{csv_path.name}]({csv_path.name})", ""]
    return lines
