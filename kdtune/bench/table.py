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
    m, s = r["machine"], r["setup"]
    t, st = s["teacher"], s["student"]
    lines = [
        f"kdtune bench: {s['model']} on {s['dataset']}: teacher {t['layers']}L/h{t['hidden']}, "
        f"student {st['layers']}L/h{st['hidden']}, {s['rows']} rows, {s['precision']}"
        f"{', compiled' if s.get('compile') else ''}; setup {s['seconds']:.0f} s (tokenizer: {s['tokenizer']})",
        f"machine: {m['device']} ({m['device_name']}), {m['torch_threads']} torch threads of {m['cpus']} CPUs, "
        f"torch {m['torch']}, load average {m['load_average_start']} -> {m['load_average_end']}",
        f"median [min-max] over {s['repeats']} timed samples each",
    ]
    for batch, b in r["batches"].items():
        lines += [""] + batch_table(batch, b)
    vm = r.get("vocab_model")
    if vm and vm.get("skipped"):
        lines += ["", f"vocabulary model: skipped ({vm['skipped']})"]
    elif vm:
        lines += ["", f"vocabulary model {vm['model']} (tokenizer: {vm['tokenizer']}), {vm['rows']} rows, "
                      f"{vm['repeats']} samples of {vm['steps_per_sample']} steps, setup {vm['setup_seconds']:.0f} s:"]
        lines += [f"batch {batch}: " + vocab_line(v) for batch, v in vm["batches"].items()]
    lines += ["", f"peak memory of one trial (build + kdtune training, no cache): {r['memory']['mib']:.0f} MiB "
                  f"({r['memory']['kind']})"]
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
        ratio = name.startswith(("speedup", "teacher_cache", "used_vocab"))
        fmt = (lambda x: f"{x:.2f}x") if ratio else _pct
        value, verdict = ("-", "not measured") if g["measured"] is None else (
            fmt(g["measured"]), "met" if g["met"] else "NOT met")
        lines.append(f"goal {name} {g['sign']} {fmt(g['target'])}: {value} ({verdict})")
    return "\n".join(lines)


def batch_table(batch: str, b: dict) -> list[str]:
    kd, plain, ref, mm, c = b["kdtune"], b["kdtune_no_cache"], b["reference"], b["matmul"], b["teacher_cache"]
    cols = (kd, plain, ref)
    ms = lambda x: f"{1000 * x:.0f}"  # noqa: E731
    row = lambda label, cells: f"{label:34s} " + " ".join(f"{x:>26s}" for x in cells)  # noqa: E731
    lines = [
        f"batch {batch}:",
        row("metric", ("kdtune (teacher cache)", "kdtune (teacher run)", "reference (TinyBERT-style)")),
        row("KD throughput (examples/s)", [_cell(p["examples_per_s"]) for p in cols]),
        row("step time (ms)", [_cell(p["step_seconds"], ms) for p in cols]),
        row("achieved FLOP/s (real tokens)", [_cell(p["flops_per_s"], _si) for p in cols]),
        row("matmul FLOP/s at its shapes", [_cell(mm["kdtune_shapes"]["flops_per_s"], _si)] * 2
            + [_cell(mm["reference_shapes"]["flops_per_s"], _si)]),
        row("MFU (real tokens)", [_cell(p["mfu"], _pct) for p in cols]),
        row("MFU vs square matmul (median)", [_pct(p["mfu_vs_square"]) for p in cols]),
        row("padding efficiency (real/padded)", [_pct(p["padding_efficiency"]) for p in cols]),
        row("padded tokens per batch", [f"{p['tokens_per_batch']:.0f}" for p in cols]),
        f"KD speedup over the reference: {b['speedup']['median']:.2f}x [{b['speedup']['min']:.2f}-{b['speedup']['max']:.2f}]",
        f"teacher cache ({c['status']}"
        + (f", {c['bytes'] / 2**20:.0f} MiB, {c['seconds']:.1f} s to attach" if c["bytes"] else "")
        + f"): {b['cache_speedup']['median']:.2f}x [{b['cache_speedup']['min']:.2f}-{b['cache_speedup']['max']:.2f}] "
          "the throughput of the teacher-run path, timed just before",
        "embedding table: " + vocab_line(b["vocab"]),
        f"square {mm['square']['size']}^3 matmul ({mm['square']['dtype']}): {_cell(mm['square']['flops_per_s'], _si)} FLOP/s",
    ]
    if b.get("ablations"):
        lines += ["fast path, one item switched off (teacher run) or on (+cache: on the cached path), "
                  "paired with a full-path run just before:",
                  f"{'variant':20s} {'examples/s':>24s} {'full path, paired':>24s} {'ratio':>6s} {'pad. eff.':>9s}"]
        for name, a in b["ablations"].items():
            label = name + (" +cache" if a.get("teacher_cache") else "")
            lines.append(f"{label:20s} {_cell(a['examples_per_s']):>24s} {_cell(a['full_path_examples_per_s']):>24s} "
                         f"{a['relative_throughput']:>5.2f}x {_pct(a['padding_efficiency']):>9s}")
    return lines


def vocab_line(v: dict) -> str:
    """The used-vocabulary pair (kdtune.bench.vocab) in one line."""
    ms = lambda p: f"{1000 * p['step_seconds']['median']:.0f} ms"  # noqa: E731
    sp = v["speedup"]
    return (f"used rows {v['used_rows']:,} of {v['vocab_size']:,} (the trial's default: {v['trial_default']}): "
            f"step {ms(v['used_vocab'])} vs {ms(v['full_vocab'])} with the full table, "
            f"{sp['median']:.2f}x [{sp['min']:.2f}-{sp['max']:.2f}] throughput; "
            f"the unused rows' share of a full-table step {_pct(v['embedding_share'])}")
