"""The bench result (a dict, as `run_bench` returns and `--json` prints) as a plain-text table."""

from __future__ import annotations


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.1f}"


def _cell(s: dict, fmt=lambda x: f"{x:.1f}") -> str:
    return f"{fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}]"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render(r: dict) -> str:
    m, s, kd, ref = r["machine"], r["setup"], r["kdtune"], r["reference"]
    t, st = s["teacher"], s["student"]
    lines = [
        f"kdtune bench: {s['model']} on {s['dataset']}: teacher {t['layers']}L/h{t['hidden']}, "
        f"student {st['layers']}L/h{st['hidden']}, batch {s['batch_size']}, {s['rows']} rows, "
        f"{s['precision']}{', compiled' if s.get('compile') else ''}",
        f"machine: {m['device']} ({m['device_name']}), {m['torch_threads']} torch threads of {m['cpus']} CPUs, "
        f"torch {m['torch']}, load average {m['load_average_start']} -> {m['load_average_end']}",
        f"median [min-max] over {s['repeats']} timed samples each",
        "",
        f"{'metric':34s} {'kdtune':>28s} {'reference (TinyBERT-style)':>28s}",
        f"{'KD throughput (examples/s)':34s} {_cell(kd['examples_per_s']):>28s} {_cell(ref['examples_per_s']):>28s}",
        f"{'step time (ms)':34s} {_cell(kd['step_seconds'], lambda x: f'{1000 * x:.0f}'):>28s} "
        f"{_cell(ref['step_seconds'], lambda x: f'{1000 * x:.0f}'):>28s}",
        f"{'achieved FLOP/s (real tokens)':34s} {_cell(kd['flops_per_s'], _si):>28s} {_cell(ref['flops_per_s'], _si):>28s}",
        f"{'matmul FLOP/s at its shapes':34s} {_cell(r['matmul']['kdtune_shapes']['flops_per_s'], _si):>28s} "
        f"{_cell(r['matmul']['reference_shapes']['flops_per_s'], _si):>28s}",
        f"{'MFU (real tokens)':34s} {_cell(kd['mfu'], _pct):>28s} {_cell(ref['mfu'], _pct):>28s}",
        f"{'MFU vs square matmul (median)':34s} {_pct(kd['mfu_vs_square']):>28s} {_pct(ref['mfu_vs_square']):>28s}",
        f"{'padding efficiency (real/padded)':34s} {_pct(kd['padding_efficiency']):>28s} "
        f"{_pct(ref['padding_efficiency']):>28s}",
        f"{'padded tokens per batch':34s} {kd['tokens_per_batch']:>28.0f} {ref['tokens_per_batch']:>28.0f}",
        "",
        f"KD speedup over the reference: {r['speedup']['median']:.2f}x "
        f"[{r['speedup']['min']:.2f}-{r['speedup']['max']:.2f}]",
        f"square {r['matmul']['square']['size']}^3 matmul ({r['matmul']['square']['dtype']}): "
        f"{_cell(r['matmul']['square']['flops_per_s'], _si)} FLOP/s",
        f"peak memory of one trial (build + kdtune training): {r['memory']['mib']:.0f} MiB ({r['memory']['kind']})",
    ]
    if r.get("ablations"):
        lines += ["", "fast path, one item switched off (kdtune path re-timed, paired with a full-path run just before):",
                  f"{'variant':20s} {'examples/s':>24s} {'full path, paired':>24s} {'ratio':>6s} {'pad. eff.':>9s}"]
        for name, a in r["ablations"].items():
            lines.append(f"{name:20s} {_cell(a['examples_per_s']):>24s} {_cell(a['full_path_examples_per_s']):>24s} "
                         f"{a['relative_throughput']:>5.2f}x {_pct(a['padding_efficiency']):>9s}")
    sw = r.get("sweep")
    if sw:
        lines.append(
            f"sweep overhead: {sw['trials']} trials of {'/'.join(map(str, sw['steps_per_trial']))} steps through Ray Tune + MLflow "
            f"{sw['sweep_wall_s']:.1f} s vs in-process {sw['in_process_s']:.1f} s: {_pct(sw['overhead'])}, "
            f"{sw['overhead_per_trial_s']:.1f} s per trial "
            f"(logged train_seconds {sw['logged_train_seconds']:.1f} s; outside the trials "
            f"{sw['outside_trials_s']:.1f} s; one run, no repeats)"
        )
    else:
        lines.append("sweep overhead: skipped")
    lines.append("")
    for name, g in r["goals"].items():
        if g["measured"] is None:
            verdict, value = "not measured", "-"
        else:
            verdict = "met" if g["met"] else "NOT met"
            value = f"{g['measured']:.2f}x" if name == "speedup" else _pct(g["measured"])
        target = f"{g['target']:.1f}x" if name == "speedup" else _pct(g["target"])
        sign = "<=" if name == "sweep_overhead" else ">="
        lines.append(f"goal {name} {sign} {target}: {value} ({verdict})")
    return "\n".join(lines)
