"""The report's Claims section and claims.csv, from `kdtune.report.claims` (which computes them)."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

from kdtune.report.claims import ALPHA, RULE, VERDICTS, Claim
from kdtune.report.records import dataset_order

FIELDS = tuple(f.name for f in dataclasses.fields(Claim))


def write_csv(claims: list[Claim], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for c in claims:
            writer.writerow(["" if getattr(c, k) is None else getattr(c, k) for k in FIELDS])
    return path


def _num(value: float | None, fmt: str = "+.1f") -> str:
    return "" if value is None else format(value, fmt)


def _in_short(claims: list[Claim]) -> list[str]:
    """Per finding and dataset: how many contrasts got each verdict."""
    datasets = dataset_order({c.dataset for c in claims})
    findings = list(dict.fromkeys(c.finding for c in claims))
    lines = ["| Finding | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for finding in findings:
        row = []
        for dataset in datasets:
            counts = Counter(c.verdict for c in claims if c.finding == finding and c.dataset == dataset)
            row.append(", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) or "–")
        lines.append(f"| {finding} | " + " | ".join(row) + " |")
    return lines


def markdown(claims: list[Claim], metric_words: str, selected_by: Counter, csv_link: bool) -> list[str]:
    lines = ["## Claims: the paper's findings, tested on these runs", ""]
    if not claims:
        return lines + ["No finding of the paper can be tested on these runs (no two cells of one table to compare).", ""]
    chosen = ", ".join(f"{metric} ({n} runs)" for metric, n in sorted(selected_by.items()))
    counts = Counter(c.verdict for c in claims)
    tested = sum(1 for c in claims if c.kind == "contrast" and c.p is not None)
    lines += [
        f"Verdicts use test {metric_words}, the report's `--metric`. The runs selected their checkpoints "
        f"by validation {chosen}.",
        "",
        "Verdicts: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + f" (of {len(claims)}).",
        f"{tested} two-cell contrasts were tested at p <= {ALPHA}: if nothing had any effect, about "
        f"{ALPHA * tested:.1f} of them would still read 'reproduced' (and as many 'differs') by chance alone.",
        "",
        "The rule, the same for every cell:",
        "",
        RULE,
        "",
        "### In short",
        "",
        *_in_short(claims),
        "",
        "### Every contrast",
        "",
        "| Finding | Where | A | B | A − B ± SE | wins | p | paper A − B | chance | verdict | size vs paper | why |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        diff = _num(c.diff) + (f" ± {c.se:.1f}" if c.se is not None else "")
        b = c.b if c.kind == "chance" else f"{c.b} {_num(c.mean_b, '.1f')}"
        lines.append(f"| {c.finding} | {c.where} | {c.a} {_num(c.mean_a, '.1f')} | {b} | {diff} | {c.wins} | "
                     f"{_num(c.p, '.3f')} | {_num(c.paper_diff)} | {_num(c.chance, '.1f')} | **{c.verdict}** | {c.size} | "
                     f"{c.why} |")
    if csv_link:
        lines += ["", "Data: [claims.csv](claims.csv)"]
    return lines + [""]
