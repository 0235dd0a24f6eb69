"""`kdtune bench [--preset small] [--dataset massive] [--device cpu] [--json] [--repeats N] [--skip-sweep]`.

Measures, in one process: KD throughput of kdtune's training path against a TinyBERT-style
reference, MFU on real tokens, padding efficiency, sweep overhead and peak memory (see
`kdtune.bench` and docs/performance.md). `--gpu-check` runs the CUDA check: random-init tiny and
xlm-roberta-base-sized models, no sweep. Progress goes to stderr; the table (or JSON) to stdout.
"""

from __future__ import annotations

import argparse

from kdtune.config import DATASETS

PRESET_NAMES = ("tiny", "small", "micro")
GPU_CHECK_MODELS = ("random:tiny", "random:base")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESET_NAMES, default="small", help="offline preset model (default: small)")
    p.add_argument("--model", metavar="KIND:NAME",
                   help="instead of --preset: preset:NAME or random:tiny|small|base (random init, no hub)")
    p.add_argument("--dataset", choices=DATASETS, default="massive", help="text to train on (default: massive)")
    p.add_argument("--data-dir", help="folder holding the dataset (else KDTUNE_DATA_DIR)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    p.add_argument("--repeats", type=int, default=5, help="timed samples per measurement (default: 5)")
    p.add_argument("--skip-sweep", action="store_true", help="skip the sweep-overhead measurement")
    p.add_argument("--batch-sizes", default="32,8",
                   help="comma list of batch sizes, each measured in turn (default: 32,8; the paper trains at 8)")
    p.add_argument("--reference-steps", type=int, default=3, help="reference steps per timed sample (default: 3)")
    p.add_argument("--sweep-steps", type=int,
                   help="training steps of each sweep trial (default: one epoch of the English rows)")
    p.add_argument("--threads", type=int, help="torch threads (default: every CPU available)")
    p.add_argument("--compile", action="store_true", help="torch.compile kdtune's path (minutes of compilation)")
    p.add_argument("--ablations", metavar="LIST", default="",
                   help="re-time kdtune's path with one fast-path item off, for each item of a comma list "
                        "('all': every item but the compile items and fused-loss, e.g. all,compile); "
                        "see kdtune.bench.ablations")
    p.add_argument("--vocab-model", default="random:e5-small", metavar="KIND:NAME",
                   help="a second model timed with and without the used-vocabulary embedding table "
                        "(default random:e5-small: multilingual-e5-small's shape and 250k tokenizer; none: skip)")
    p.add_argument("--gpu-check", action="store_true",
                   help="CUDA check: random-init tiny and xlm-r-base-sized models, no sweep, 3 repeats")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from kdtune.bench import BenchOptions, render, run_bench

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    from kdtune.bench.ablations import DEFAULT

    from kdtune.errors import UsageError

    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        raise UsageError(f"--batch-sizes {args.batch_sizes!r}: expected a comma list of integers, e.g. 32,8") from None
    ablations: list[str] = []
    for item in filter(None, args.ablations.split(",")):
        ablations += [a for a in (DEFAULT if item == "all" else (item,)) if a not in ablations]
    base = dict(ablations=tuple(ablations), dataset=args.dataset, data_dir=args.data_dir, device=args.device, batch_sizes=batch_sizes,
                repeats=args.repeats, reference_steps=args.reference_steps, skip_sweep=args.skip_sweep,
                sweep_steps=args.sweep_steps, threads=args.threads, compile=args.compile,
                vocab_model=None if args.vocab_model == "none" else args.vocab_model)
    if args.gpu_check:
        base.update(device="cuda", skip_sweep=True, repeats=min(args.repeats, 3))
        # the vocabulary model once, beside the first model
        runs = [BenchOptions(model=m, **{**base, "vocab_model": base["vocab_model"] if i == 0 else None})
                for i, m in enumerate(GPU_CHECK_MODELS)]
    else:
        runs = [BenchOptions(model=args.model or f"preset:{args.preset}", **base)]
    results = []
    for opts in runs:
        log(f"{opts.model} on {opts.device}")
        results.append(run_bench(opts, log=log))
        if not args.json:
            print(render(results[-1]) + "\n", flush=True)
    if args.json:
        print(json.dumps(results if args.gpu_check else results[0], indent=2))
    return 0
