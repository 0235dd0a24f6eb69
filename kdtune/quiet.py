"""Quiet Hugging Face libraries inside library calls, restoring the caller's settings after."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def no_progress_bars():
    """No `datasets` progress bars (map, save_to_disk)."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_transformers(errors_only: bool = False):
    """No transformers progress bars ("Loading weights" on every from_pretrained, saving);
    with `errors_only` no warnings either (an expected load report, such as a fresh classifier)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    if errors_only:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
