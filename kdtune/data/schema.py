"""The one row schema every loader returns.

Columns: `id` (str, unique within a split: `<language>:<source id or line number>`), `text` (str,
stripped of leading/trailing whitespace), `language` (str: a MASSIVE locale such as "en-US", a tsm
language such as "english", or a synthetic language name) and `label` (`datasets.ClassLabel`
whose names are the dataset's fixed label vocabulary, so ids are stable even when a split lacks a
label). Splits are always "train", "validation" and "test".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import datasets
    import pyarrow

SPLITS = ("train", "validation", "test")
COLUMNS = ("id", "text", "language", "label")


def features(label_names: tuple[str, ...]) -> "datasets.Features":
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "language": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(label_names)),
        }
    )


def empty_columns() -> dict[str, dict[str, list]]:
    return {split: {column: [] for column in COLUMNS} for split in SPLITS}


def to_dataset_dict(columns: dict[str, dict[str, list]], label_names: tuple[str, ...]) -> "datasets.DatasetDict":
    import datasets

    feats = features(label_names)
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(columns[split], features=feats) for split in SPLITS}
    )


def arrow_columns(ds, names: list[str]) -> "pyarrow.Table":
    """Columns `names` of `ds` as a pyarrow Table, honouring an index selection.

    `ds.with_format("arrow")[:]` gathers a selection row by row (seconds for MASSIVE); taking
    the index column in one vectorized `Table.take` is ~100x faster.
    """
    table = getattr(getattr(ds, "data", None), "table", None)
    indices = getattr(ds, "_indices", None)
    if table is None:  # not an Arrow-backed datasets.Dataset as we know it: slow, general path
        return ds.with_format("arrow")[:].select(names)
    table = table.select(names)
    if indices is not None:
        table = table.take(indices.column(0))
    return table


def derived_fingerprint(ds, *parts) -> str:
    """A `datasets` fingerprint for a transform of `ds` described by `parts`.

    Passing it to `Dataset.select(..., new_fingerprint=...)` skips `datasets` pickling the
    whole index list to hash it (seconds for a MASSIVE partition).
    """
    import hashlib
    import json

    blob = json.dumps([getattr(ds, "_fingerprint", None), *parts], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
