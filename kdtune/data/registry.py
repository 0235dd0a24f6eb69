"""The datasets kdtune knows, one registry: the names are `kdtune.config.DATASETS`, and each name's
loader is the module `kdtune.data.<name>` (massive, tsm, synthetic), which holds its languages
(`LOCALES` or `LANGUAGES`), partitions and label vocabulary."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from kdtune.config import DATASETS
from kdtune.errors import UsageError


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def dataset_module(name: str) -> ModuleType:
    """The loader module of dataset `name` (a UsageError naming the choices for another name)."""
    return import_module(f"kdtune.data.{check_dataset(name)}")
