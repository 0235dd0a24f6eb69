"""`kdtune bench`: throughput, MFU, padding efficiency, sweep overhead and peak memory.

    from kdtune.bench import BenchOptions, run_bench, render
    result = run_bench(BenchOptions(model="preset:small", dataset="massive", data_dir=...))
    print(render(result))

Modules: `flops` (analytic FLOP count on real tokens), `matmul` (the machine's dense matmul
FLOP/s), `timing` (medians and spreads), `setup` (model, rows and trial), `paths` (kdtune's KD
path through `kdtune.training.loop.train`, and the TinyBERT-style reference loop), `vocab` (the
used-vocabulary embedding table against the full one, paired), `memory` (peak memory),
`overhead` (Ray Tune + MLflow sweep overhead), `run` (the orchestration), `table`.
"""

from kdtune.bench.run import GOALS, BenchOptions, run_bench
from kdtune.bench.table import render

__all__ = ["GOALS", "BenchOptions", "render", "run_bench"]
