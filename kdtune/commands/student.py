"""`kdtune student`: make a student checkpoint by copying (selecting) weights, without training.

Writes ``save_pretrained`` model + tokenizer files and ``copy_report.json`` into ``--out``. The
checkpoint loads with ``AutoModelForSequenceClassification.from_pretrained(out)`` (add
``attn_implementation="eager"`` for KD) and ``AutoTokenizer.from_pretrained(out)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdtune.config import HEAD_MODES, INITS, LAYER_MAPS
from kdtune.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Values are validated in `run` (one-line UsageError) rather than by argparse `choices`/`type`,
    # whose errors print a usage block.
    parser.add_argument("--teacher", required=True, metavar="DIR", help="fine-tuned teacher (defines architecture, labels and tokenizer)")
    parser.add_argument("--base", metavar="DIR", help="pretrained base model, needed for --init base")
    parser.add_argument("--init", default="teacher", help=f"where weights come from: {', '.join(INITS)} (default teacher)")
    parser.add_argument("--layers", help="student layers (default: half the teacher's)")
    parser.add_argument("--hidden", help="student hidden size (default: the teacher's)")
    parser.add_argument("--layer-map", default="paper",
                        help=f"{', '.join(LAYER_MAPS)}, or comma-separated 0-based teacher layers")
    parser.add_argument("--head-mode", default="keep_heads", help=f"{' or '.join(HEAD_MODES)} (how attention shrinks)")
    parser.add_argument("--seed", default="0", help="seed for freshly initialized tensors (default 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")


def _int(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}: {value!r} is not an integer") from None


def _layer_map(value: str):
    if value in LAYER_MAPS:
        return value
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise UsageError(
            f"layer_map: unknown value {value!r}; allowed: {', '.join(LAYER_MAPS)} or comma-separated teacher layer indices"
        ) from None


def _model_dir(name: str, value: str) -> Path:
    path = Path(value)
    if not (path / "config.json").is_file():
        raise UsageError(f"{name}: {value} is not a model directory (no config.json)")
    return path


def run(args: argparse.Namespace) -> int:
    from kdtune.models.selection import check_head_mode

    if args.init not in INITS:
        raise UsageError(f"init: unknown value {args.init!r}; allowed: {', '.join(INITS)}")
    check_head_mode(args.head_mode)
    layers, hidden, seed = _int("layers", args.layers), _int("hidden", args.hidden), _int("seed", args.seed)
    layer_map = _layer_map(args.layer_map)
    teacher_dir = _model_dir("teacher", args.teacher)
    base_dir = None
    if args.init == "base":
        if args.base is None:
            raise UsageError("base: --init base needs --base DIR (the pretrained base model)")
        base_dir = _model_dir("base", args.base)

    from transformers import AutoConfig, AutoTokenizer

    from kdtune.models.layer_map import resolve_layer_map
    from kdtune.models.student import student_config
    from kdtune.quiet import quiet_transformers

    # Check the sizes against the teacher's config before loading any weights.
    teacher_config = AutoConfig.from_pretrained(teacher_dir)
    cfg = student_config(teacher_config, layers, hidden, args.head_mode)
    resolve_layer_map(layer_map, teacher_config.num_hidden_layers, cfg.num_hidden_layers)
    try:
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    except (OSError, ValueError) as exc:
        raise UsageError(f"teacher: no usable tokenizer in {teacher_dir} ({type(exc).__name__})") from None

    # No load reports: the MLM head a base leaves unused is expected; the copy report says what was used.
    with quiet_transformers(errors_only=True):
        student, report = _build(args, teacher_dir, base_dir, layers, hidden, layer_map, seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers(errors_only=True):
        student.save_pretrained(out)
        tokenizer.save_pretrained(out)
    record = {"teacher_dir": str(teacher_dir), "base_dir": str(base_dir) if base_dir else None, **report.to_dict()}
    (out / "copy_report.json").write_text(json.dumps(record, indent=1) + "\n")
    print(report.summary())
    print(f"student written to {out}")
    return 0


def _build(args, teacher_dir, base_dir, layers, hidden, layer_map, seed):
    from transformers import AutoModelForSequenceClassification

    from kdtune.models.student import build_student

    teacher, info = AutoModelForSequenceClassification.from_pretrained(teacher_dir, output_loading_info=True)
    if info["missing_keys"]:
        # transformers would fill them with random values that we would then "copy".
        raise UsageError(
            f"teacher: {teacher_dir} is not a fine-tuned sequence classifier (missing {', '.join(sorted(info['missing_keys']))})"
        )
    base = None
    if base_dir is not None:
        base = _load_base(base_dir, teacher.config)
    student, report = build_student(
        args.init, teacher, base, layers=layers, hidden=hidden, layer_map=layer_map,
        head_mode=args.head_mode, seed=seed,
    )
    return student, report


def _load_base(base_dir: Path, teacher_config) -> dict:
    """The base model's state dict, without the tensors its checkpoint lacked.

    `AutoModel` fills tensors missing from the checkpoint (e.g. the pooler of an MLM checkpoint)
    with unseeded random values; dropping them makes the student's own seeded init apply instead.
    """
    from transformers import AutoModel

    from kdtune.models.arch import arch_for

    model, info = AutoModel.from_pretrained(base_dir, output_loading_info=True)
    cfg = model.config
    if arch_for(cfg) is not arch_for(teacher_config):
        raise UsageError(f"base: model_type {cfg.model_type!r} does not match the teacher's {teacher_config.model_type!r}")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size"):
        if getattr(cfg, key) != getattr(teacher_config, key):
            raise UsageError(f"base: {key} {getattr(cfg, key)} differs from the teacher's {getattr(teacher_config, key)}")
    missing = set(info["missing_keys"])
    return {k: v for k, v in model.state_dict().items() if k not in missing}
