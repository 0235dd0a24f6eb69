"""`kdtune` command line: a thin dispatcher over `kdtune.commands.<name>`.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`; it is imported only
when its command runs, so `kdtune data` never pays for importing Ray or MLflow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kdtune.errors import UsageError

# Set (unless the user set them) before a command imports Ray, MLflow or transformers.
ENV_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",  # Ray 2.60 would write ~/.ray/auth_token for a local cluster
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",  # kdtune prints its own line per trial event
    "RAY_DEDUP_LOGS": "0",
    # Ray warns when the experiment state syncs often; with a local store that is noise
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "TOKENIZERS_PARALLELISM": "false",
}

COMMANDS = {
    "student": "make a student checkpoint by copying weights (no training)",
    "data": "show rows per language and label of a dataset selection",
    "preset": "build an offline model preset (tiny: tokenizer + small XLM-R + brief MLM; minilm, e5: pretrained)",
    "sweep": "run a YAML sweep of trials with Ray Tune, tracked in MLflow",
    "report": "rebuild the paper's tables and figures from MLflow runs",
    "best": "print the best trial of an experiment or sweep, and its config as a fixed: block",
    "bench": "measure training throughput, MFU, padding efficiency and sweep overhead",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdtune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = _command_module(name)
        if module is None:
            continue
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def _command_module(name: str):
    try:
        return importlib.import_module(f"kdtune.commands.{name}")
    except ModuleNotFoundError as exc:  # a command not built yet in this checkout
        if exc.name == f"kdtune.commands.{name}":
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except UsageError as exc:
        print(f"kdtune: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `kdtune ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
