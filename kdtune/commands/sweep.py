"""`kdtune sweep SWEEP.yaml [--set key=value ...] [--dry-run] [--rerun-failed | --force]`.

Running the same command again resumes the sweep (finished trials are skipped); there is no
separate resume flag.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep YAML file (see sweeps/)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a YAML value, e.g. --set fixed.epochs=1 --set grid.seed=[1,2]")
    p.add_argument("--dry-run", action="store_true", help="validate and print the expanded grid; run nothing")
    p.add_argument("--rerun-failed", action="store_true", help="run trials whose last run FAILED again")
    p.add_argument("--force", action="store_true", help="run every trial again (old runs are marked superseded)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite store under ./mlruns)")
    p.add_argument("--storage", help="folder for teachers, checkpoints and Ray results (default: ./mlruns)")
    p.add_argument("--address", help="Ray cluster address (ray://host:port or auto); default: a local Ray")


def run(args: argparse.Namespace) -> int:
    from kdtune.config import load_sweep

    spec = load_sweep(args.sweep, args.sets)
    if args.dry_run:
        from kdtune.sweep import describe

        describe(spec)
        return 0
    import signal

    from kdtune.sweep import run_sweep

    # A batch scheduler or `kill` stops a job with SIGTERM (Slurm on time-out or preemption,
    # Kubernetes on eviction): stop the sweep the same clean, resumable way as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, terminate_like_ctrl_c)
    try:
        outcome = run_sweep(spec, tracking_uri=args.tracking_uri, storage=args.storage, address=args.address,
                            rerun_failed=args.rerun_failed, force=args.force)
    except KeyboardInterrupt:
        # Stopped outside Tune's graceful stop (building presets, training teachers, or a second
        # Ctrl-C): teachers keep their last evaluation's checkpoint, trials resume as after a crash.
        print("\nsweep interrupted: run the same command again to resume", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"\nparent run {outcome.parent_run_id}: {outcome.finished} finished, {outcome.failed} failed, "
          f"{outcome.early_stopped} early-stopped, {len(outcome.skipped)} skipped"
          + (f", {outcome.interrupted} interrupted: run the same command again to resume" if outcome.interrupted else ""))
    if outcome.interrupted:
        return 130  # the shell's code for a Ctrl-C
    return 0 if outcome.ok else 1


def terminate_like_ctrl_c(signum, frame) -> None:
    """SIGTERM handler: do what SIGINT does now (Ray Tune's graceful stop while trials run,
    else KeyboardInterrupt), also when SIGINT is ignored, as in a background job of a script."""
    import signal

    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt
