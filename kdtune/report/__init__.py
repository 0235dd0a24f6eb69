"""`kdtune report`: the paper's Tables 2-5, Figures 2-3 and a per-language view, from trial records.

This package works on plain `kdtune.tracking.query.TrialRecord`s and never imports mlflow, so it
is testable without a tracking store; `kdtune.commands.report` fetches the records.

Modules: `paper` (the paper's printed numbers, data in paper_numbers.yaml), `records` (typed
params, cell statistics), `tables` (Tables 2-5; `table_parts`: their shared pieces), `languages`
(per-language F1), `figures` (Figures 2-3 and the heat map, matplotlib optional), `claims` and
`claims_section` (the paper's findings, tested), `teachers` (the Teachers section), `search` (a
search's section), `render` (markdown and CSV), `build` (the report folder: report.md as section
functions over one `ReportContext`, and the CSVs).
"""

from kdtune.report.build import FORMATS, ReportResult, build_report

__all__ = ["FORMATS", "ReportResult", "build_report"]
