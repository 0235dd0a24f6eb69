"""The package's shape (issue #26): no import cycle (not even through a package's `__init__`), Ray
only under sweep/, mlflow only under tracking/, a small top level, one owner of a trial run's status."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "kdtune"


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def imports(name: str, path: Path, is_pkg: bool, known) -> set[str]:
    """Every kdtune module `name` imports anywhere in its text (functions and TYPE_CHECKING too).
    Importing a.b.c runs a and a.b first; that edge is left out where a or a.b encloses `name`
    (it is then already being imported), not where `name` names the package itself (`from a import x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kdtune")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            if base.startswith("kdtune"):
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    edges = set()
    for dep in found:
        parts = dep.split(".")
        for i in range(1, len(parts) + 1):
            m = ".".join(parts[:i])
            if m in known and m != name and (m == dep or not f"{name}.".startswith(f"{m}.")):
                edges.add(m)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_even_through_a_package_init():
    known = modules()
    graph = {name: imports(name, path, is_pkg, known) for name, (path, is_pkg) in known.items()}
    assert cycles(graph) == []


def test_no_module_imports_through_its_own_packages_init():
    """`from kdtune.report import figures` inside kdtune/report/ runs (or finds half-run) the package
    `__init__`, which may import this very module: import the sibling module by its full name."""
    bad = []
    for name, (path, is_pkg) in modules().items():
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not is_pkg and isinstance(node, ast.ImportFrom) and node.module == package and package != "kdtune":
                bad.append(f"{name}: from {package} import {', '.join(a.name for a in node.names)}")
    assert bad == []


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_ray_only_under_sweep_and_mlflow_only_under_tracking():
    ray_ok = {"kdtune.bench.overhead"}  # measures the sweep's overhead with its own Ray
    ray = sorted(n for n, (p, _) in modules().items()
                 if "ray" in imported_roots(p) and not n.startswith("kdtune.sweep") and n not in ray_ok)
    mlflow = sorted(n for n, (p, _) in modules().items()
                    if "mlflow" in imported_roots(p) and not n.startswith("kdtune.tracking"))
    assert ray == [] and mlflow == []


def test_the_top_level_keeps_at_most_six_modules():
    top = sorted(p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= 6, top


def test_only_the_lifecycle_sets_a_trial_runs_status():
    """Trial runs end through kdtune.sweep.lifecycle; the sweep's parent run and teacher runs are
    ended by their own owners (sweep/run.py, tracking/teachers.py), Tracker.end_run is the call."""
    owners = {"kdtune.sweep.lifecycle", "kdtune.sweep.run", "kdtune.tracking.teachers", "kdtune.tracking.runs"}
    writers = sorted(n for n, (p, _) in modules().items()
                     if ("end_run(" in p.read_text(encoding="utf-8") or "set_terminated(" in p.read_text(encoding="utf-8"))
                     and n not in owners)
    assert writers == []
    run_py = (PKG / "sweep" / "run.py").read_text(encoding="utf-8")
    assert all("end_run(parent" in line for line in run_py.splitlines() if "end_run(" in line)


def test_the_trial_lifecycle_moves_once_and_reports_with_one_set_of_keys():
    from kdtune.sweep.lifecycle import EVALS, TrialLifecycle

    class Tracker:
        def __init__(self):
            self.ended, self.written = [], {}

        def end_run(self, run_id, status):
            self.ended.append(status)

        def set_tags(self, run_id, tags):
            self.written.update(tags)

        def tags(self, run_id):
            return self.written

        def log_text(self, run_id, text, name):
            pass

    tracker, reports = Tracker(), []
    life = TrialLifecycle(tracker, "r", "micro_f1", reports.append)
    life.evals = 2  # resumed after two evaluations
    life.evaluated(10, 0.5, 0.6, 3, "node")
    life.finish()
    life.report_final(0.6, 0.55, 12)
    assert tracker.ended == ["FINISHED"] and life.ended
    assert [r["val_micro_f1"] for r in reports] == [0.5, 0.6] and [r[EVALS] for r in reports] == [3, 3]
    with pytest.raises(RuntimeError, match="already ended FINISHED"):
        life.stopped()

    diverged = TrialLifecycle(Tracker(), "d", "macro_f1", reports.append)
    diverged.diverged("loss is nan", "trace")
    assert diverged.state == "FAILED" and diverged.tracker.written["kdtune.failure"] == "loss is nan"
    assert reports[-1] == {"val_macro_f1": 0.0, "diverged": 1, EVALS: 0}
