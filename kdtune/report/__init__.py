"""`kdtune report`: the paper's Tables 2-5, Figures 2-3 and a per-language view, from trial records.

This package works on plain `kdtune.tracking.query.TrialRecord`s and never imports mlflow, so it
is testable without a tracking store; `kdtune.commands.report` fetches the records.

Modules: `paper` (the paper's printed numbers, data in paper_numbers.yaml), `records` (typed
params, cell statistics), `tables` (Tables 2-5), `languages` (per-language F1), `figures`
(Figures 2-3 and the heat map, matplotlib optional), `render` (markdown and CSV), `build` (the
report folder).
"""

from kdtune.report.build import FORMATS, ReportResult, build_report

__all__ = ["FORMATS", "ReportResult", "build_report"]
