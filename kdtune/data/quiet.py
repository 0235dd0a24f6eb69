"""Silence `datasets` progress bars inside library calls (restoring the caller's setting)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def no_progress_bars():
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()
