"""`kdtune preset NAME --dataset D`: build the offline model preset (tokenizer + small XLM-R + MLM)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="tiny, small or micro")
    parser.add_argument("--dataset", required=True, help="massive, tsm or synthetic (its training text)")
    parser.add_argument("--data-dir", default=None, help="local folder, archive or URL (else KDTUNE_DATA_DIR, else the hub)")
    parser.add_argument("--out", default=None, help="also copy the preset folder here")
    parser.add_argument("--cache-dir", default=None, help="cache root (default KDTUNE_CACHE or ~/.cache/kdtune)")


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    from pathlib import Path

    from kdtune.models.preset import build_preset, get_spec, load_preset_info
    from kdtune.models.preset_mlm import log as progress

    get_spec(args.name)  # unknown names fail before any data is read
    # A build takes minutes: show its progress on stderr while this command runs.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = progress.level
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    try:
        path = build_preset(
            args.name,
            args.dataset,
            data_dir=args.data_dir,
            out=Path(args.out) if args.out else None,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        )
    finally:
        progress.removeHandler(handler)
        progress.setLevel(previous_level)
    info = load_preset_info(path)
    print(f"preset {args.name} for {args.dataset}: {path}")
    print(
        f"MLM loss (held-out text, fixed masks): {info['mlm_loss_start']:.3f} -> {info['mlm_loss_end']:.3f} "
        f"after {info['spec']['mlm_steps']} steps; vocab {info['vocab_size']}; built in {info['seconds']} s"
    )
    return 0
