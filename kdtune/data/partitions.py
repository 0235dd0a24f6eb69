"""Language partitions of paper Table 1, and selecting rows by language.

Partitions (`PARTITIONS`): "all" (every language of the dataset), "unseen" (Table 1's zero-shot
list), "seen" (all minus unseen) and "english" (en-US / english). `languages()` returns a named
partition sorted alphabetically; an explicit list (or a comma-separated string) of languages is
validated and returned in the order given, without duplicates.

`within` narrows the dataset to a subset of its languages (a trial's `languages`, for a cheaper
experiment): the named partitions are then taken inside it ("seen" = the subset minus Table 1's
unseen languages, and so on), and an explicit list must lie inside it.

| dataset   | all | seen | unseen                                   | english |
|-----------|-----|------|------------------------------------------|---------|
| massive   | 52  | 25   | 27 (Table 1, incl. ca-ES)                | en-US   |
| tsm       | 8   | 4    | arabic, french, hindi, portuguese        | english |
| synthetic | 6   | 4    | arabic, cjk                              | english |
"""

from __future__ import annotations

from collections.abc import Sequence

from kdtune.config import PARTITIONS
from kdtune.data.registry import dataset_module
from kdtune.data.schema import arrow_columns, derived_fingerprint
from kdtune.errors import UsageError


def all_languages(dataset: str) -> tuple[str, ...]:
    module = dataset_module(dataset)
    return tuple(getattr(module, "LOCALES", None) or module.LANGUAGES)


def languages(dataset: str, partition: str | Sequence[str], within: str | Sequence[str] | None = None) -> list[str]:
    """The languages of a named partition, or the validated explicit list, inside `within`."""
    every = all_languages(dataset)
    module = dataset_module(dataset)
    universe = every if within is None or within == "all" else languages(dataset, within)
    inside = "" if universe is every else f" within languages {','.join(universe)}"
    if isinstance(partition, str):
        name = partition.strip()
        named = {
            "all": lambda: sorted(universe),
            "unseen": lambda: sorted(set(universe) & set(module.UNSEEN)),
            "seen": lambda: sorted(set(universe) - set(module.UNSEEN)),
            "english": lambda: [lang for lang in module.ENGLISH if lang in universe],
        }
        if name in named:
            chosen = named[name]()
            if not chosen:
                raise UsageError(f"partition {name!r} of {dataset} has no languages{inside}")
            return chosen
        requested = [part.strip() for part in name.split(",") if part.strip()]
    else:
        requested = [str(part).strip() for part in partition]
    if not requested:
        raise UsageError(f"empty language partition for {dataset}; use one of {', '.join(PARTITIONS)}")
    unknown = [lang for lang in requested if lang not in every]
    if unknown:
        raise UsageError(
            f"unknown partition or language {', '.join(map(repr, unknown))} for {dataset}; "
            f"partitions: {', '.join(PARTITIONS)}; languages: {', '.join(every)}"
        )
    outside = [lang for lang in requested if lang not in universe]
    if outside:
        raise UsageError(f"language(s) {', '.join(outside)} of {dataset} not{inside}")
    return list(dict.fromkeys(requested))


def select_languages(ds, languages: Sequence[str]):
    """Rows of `ds` (a Dataset, or each split of a DatasetDict) whose language is in `languages`.

    Keeps the original row order; uses an index selection (no data copy, no cache files).
    A language absent from `ds` is a UsageError listing the languages present.
    """
    import datasets
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({split: select_languages(part, languages) for split, part in ds.items()})
    column = arrow_columns(ds, ["language"]).column("language")  # honours an index selection
    present = sorted(pc.unique(column).to_pylist())
    wanted = list(dict.fromkeys(languages))
    missing = [lang for lang in wanted if lang not in present]
    if missing:
        raise UsageError(
            f"language(s) {', '.join(missing)} not in the data; present: {', '.join(present) or 'none'}"
        )
    mask = pc.is_in(column, value_set=pa.array(wanted, type=pa.string()))
    rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    return ds.select(rows, new_fingerprint=derived_fingerprint(ds, "languages", wanted))
