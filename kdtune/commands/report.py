"""`kdtune report`: rebuild the paper's tables and figures from a sweep's MLflow runs.

Reads trial runs with the MLflow client (works against a remote tracking server too), writes
report.md, CSVs and PNGs to --out (default ./reports/<experiment>), and logs the folder as
artifacts (under `report/`) of the experiment's sweep parent run when there is exactly one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdtune.errors import UsageError
from kdtune.metrics import DEFAULT_METRIC, METRICS

FORMATS = ("md", "csv", "png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", action="append", metavar="NAME",
                        help="MLflow experiment (the sweep's tracking.experiment); repeat to combine several")
    source.add_argument("--runs-csv", metavar="FILE",
                        help="report the runs of an earlier report's runs.csv instead (no store needed; tables, "
                             "claims and Figure 2 only: the file has no loss curves or per-language scores)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite store in ./mlruns)")
    parser.add_argument("--out", default=None, help="output folder (default: ./reports/<experiment>)")
    parser.add_argument("--format", default=",".join(FORMATS), metavar="LIST",
                        help="comma list of md, csv, png (default: all)")
    parser.add_argument("--languages", default=None, metavar="KEY=VALUE,...",
                        help="run group for the per-language table, over the default "
                             "kd=True,train_partition=all,eval_partition=all,teacher_partition=all "
                             "(and the data fraction most runs use, unless fraction=F is given)")
    parser.add_argument("--metric", choices=METRICS, default=DEFAULT_METRIC,
                        help=f"the F1 compared with the paper's numbers (default: {DEFAULT_METRIC}, the paper's; "
                             "see docs/fidelity.md)")
    parser.add_argument("--no-log-artifacts", action="store_true",
                        help="do not log the report folder to the sweep's parent run")


def parse_formats(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise UsageError(f"--format: unknown format '{','.join(unknown) or text}'; allowed: {', '.join(FORMATS)}")
    return chosen


def default_out(experiments: list[str]) -> Path:
    safe = ["".join(c if c.isalnum() or c in "._-" else "_" for c in name) for name in experiments]
    return Path("reports") / "+".join(safe)


def run(args: argparse.Namespace) -> int:
    from kdtune.report import build_report
    from kdtune.report.languages import parse_filter
    from kdtune.tracking import query
    from kdtune.tracking.store import resolve_tracking_uri

    formats = parse_formats(args.format)
    if args.runs_csv:
        return _from_runs_csv(args, formats)
    experiments = list(dict.fromkeys(args.experiment))
    uri = resolve_tracking_uri(args.tracking_uri)
    records = query.fetch_trials(uri, experiments)
    languages_filter = parse_filter(args.languages, records)
    out = Path(args.out) if args.out else default_out(experiments)

    result = build_report(
        records,
        out,
        formats=formats,
        history=lambda run_ids, key: query.fetch_history(uri, run_ids, key),
        experiments=experiments,
        tracking_uri=uri,
        languages_filter=languages_filter,
        metric=args.metric,
        teachers=query.fetch_runs(uri, experiments, kind="teacher"),
    )
    for warning in result.warnings:
        print(f"kdtune: warning: {warning}", file=sys.stderr)

    counts = result.status_counts
    skipped = sum(n for s, n in counts.items() if s != "FINISHED")
    filled = ", ".join(f"{t.name.replace('table', 'Table ')}: {t.n_runs} runs" for t in result.tables)
    print(f"report: {out}/ ({len(result.files)} files); {counts.get('FINISHED', 0)} FINISHED trial runs used, "
          f"{skipped} skipped; {filled}")

    if not args.no_log_artifacts:
        for name in experiments:
            sweeps = query.sweep_run_ids(uri, name)
            if len(sweeps) == 1:
                query.log_report_artifacts(uri, sweeps[0], out, files=result.files)
                print(f"logged the report as artifacts (report/) of sweep run {sweeps[0]} in '{name}'")
            else:
                print(f"not logged as artifacts in '{name}': it has {len(sweeps)} sweep runs (need exactly one)")
    return 0


def _from_runs_csv(args: argparse.Namespace, formats: tuple[str, ...]) -> int:
    from kdtune.report import build_report
    from kdtune.report.build import records_from_runs_csv
    from kdtune.report.languages import parse_filter

    source = Path(args.runs_csv)
    if not source.is_file():
        raise UsageError(f"--runs-csv: {source}: no such file")
    out = Path(args.out) if args.out else default_out([source.parent.name])
    if out.resolve() == source.parent.resolve():  # its runs.csv, figures and teachers.csv would be replaced
        raise UsageError(f"--out: {out} holds the runs.csv being read and the report made with it; choose another folder")
    records = records_from_runs_csv(source)
    result = build_report(records, out, formats=formats, experiments=[str(source)], tracking_uri="(none: runs.csv)",
                          languages_filter=parse_filter(args.languages, records), metric=args.metric)
    print(f"report: {out}/ ({len(result.files)} files) from {len(records)} runs in {source}; "
          f"{len(result.claims)} claims")
    return 0
