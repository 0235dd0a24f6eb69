"""Seeded subsets stratified by (language, label).

Rounding rule (documented contract): a (language, label) cell with n > 0 rows keeps

    k = min(n, max(1, floor(n * fraction + 0.5)))

rows, i.e. n * fraction rounded half up, but never 0, so no label present in a language vanishes.
Fraction 1.0 keeps every row. The k rows of a cell are the first k of a permutation drawn from
`numpy.random.default_rng([seed, crc32(language), label])`: the choice for one language does not
depend on which other languages are in the data (training on "seen" picks the same en-US rows as
training on "english"). The result keeps the input's row order.
"""

from __future__ import annotations

import math
import zlib

from kdtune.data.schema import arrow_columns, derived_fingerprint
from kdtune.errors import UsageError


def cell_size(n: int, fraction: float) -> int:
    """Rows kept from a cell of n rows (the rule in the module docstring)."""
    if n <= 0:
        return 0
    return min(n, max(1, math.floor(n * fraction + 0.5)))


def check_fraction(fraction: float) -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise UsageError(f"fraction {fraction!r} is not a number; use 0 < fraction <= 1") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise UsageError(f"fraction {fraction!r} is out of range; use 0 < fraction <= 1")
    return value


def stratified_fraction(ds, fraction: float, seed: int):
    """A seeded, (language, label)-stratified subset of `ds` (a `datasets.Dataset`)."""
    import numpy as np

    fraction = check_fraction(fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed {seed!r} must be a non-negative integer")
    if fraction == 1.0:
        return ds
    table = arrow_columns(ds, ["language", "label"])  # honours an existing index selection
    encoded = table.column("language").combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    lang_codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    labels = table.column("label").to_numpy().astype(np.int64)
    # Group row indices by (language, label) in one sort instead of one scan per cell.
    order = np.lexsort((labels, lang_codes))
    keys = lang_codes[order] * (int(labels.max(initial=0)) + 1) + labels[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(order) else np.array([], int)
    ends = np.r_[starts[1:], len(order)]
    keep: list[np.ndarray] = []
    for start, end in zip(starts.tolist(), ends.tolist()):
        rows = order[start:end]
        lang, label = names[lang_codes[rows[0]]], int(labels[rows[0]])
        rng = np.random.default_rng([int(seed), zlib.crc32(lang.encode("utf-8")), label])
        keep.append(rows[rng.permutation(len(rows))[: cell_size(len(rows), fraction)]])
    chosen = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=np.int64)
    return ds.select(chosen, new_fingerprint=derived_fingerprint(ds, "fraction", fraction, int(seed)))
