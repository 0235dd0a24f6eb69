"""Datasets for kdtune: loaders, Table 1 language partitions, stratified fractions, batching.

`load(name, data_dir)` returns a `datasets.DatasetDict` with splits train/validation/test and
columns id, text, language, label (ClassLabel); see `kdtune.data.schema` for the conventions and
`kdtune.data.sources` for where data comes from (explicit data_dir, else KDTUNE_DATA_DIR, else the
Hugging Face hub). Label vocabularies: MASSIVE's 60 intents sorted alphabetically
(`massive.INTENTS`); tsm negative/neutral/positive = 0/1/2 (`tsm.LABELS`); synthetic
(`synthetic.INTENTS`). Which datasets exist: `kdtune.data.registry` (one registry).
"""

from __future__ import annotations

import os

from kdtune.data import massive, synthetic, tsm
from kdtune.data.batching import encode, make_loader
from kdtune.data.fractions import cell_size, stratified_fraction
from kdtune.data.registry import check_dataset
from kdtune.data.partitions import PARTITIONS, all_languages, languages, select_languages
from kdtune.data.schema import SPLITS
from kdtune.config import DATASETS
from kdtune.errors import UsageError

__all__ = [
    "DATASETS",
    "PARTITIONS",
    "SPLITS",
    "all_languages",
    "cell_size",
    "encode",
    "languages",
    "load",
    "make_loader",
    "select_languages",
    "stratified_fraction",
]


def load(name: str, data_dir: str | os.PathLike | None = None):
    """Load dataset `name` ("massive", "tsm" or "synthetic") as a DatasetDict.

    `data_dir` (else env KDTUNE_DATA_DIR) may point at a folder containing `<name>/`, at the
    dataset folder itself, or at an archive / URL (downloaded once into the cache). With neither
    set, the Hugging Face hub is used (and fails fast, in one line, when offline). "synthetic"
    needs no files and ignores both.
    """
    from kdtune.data import arrow_cache, sources

    check_dataset(name)
    if name == "synthetic":
        return synthetic.generate()
    source, origin = sources.requested_source(data_dir)
    if source is None:
        return massive.from_hub() if name == "massive" else tsm.from_hub()
    folder = sources.local_folder(source, origin)
    candidates = [folder / name, folder]
    # An extracted archive often wraps everything in one top folder (e.g. xlm-t-main/).
    inner = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] if folder.is_dir() else []
    if len(inner) == 1:
        candidates += [inner[0] / name, inner[0]]
    for candidate in candidates:
        if name == "massive":
            files = massive.find_files(candidate)
            if files:
                key = arrow_cache.files_key("massive", files.values())
                return arrow_cache.cached("massive", key, lambda: massive.read_local(files))
        else:
            layout = tsm.find_layout(candidate)
            if layout:
                kind, root, langs = layout
                paths = tsm.source_files(kind, root, langs)
                key = arrow_cache.files_key(f"tsm-{kind}", paths)
                return arrow_cache.cached("tsm", key, lambda: tsm.read_local(kind, root, langs))
    expected = (
        "<locale>.jsonl.gz, <locale>.jsonl or 1.1/data/<locale>.jsonl"
        if name == "massive"
        else "<language>/train.jsonl or data/sentiment/<language>/train_text.txt"
    )
    raise UsageError(f"no {name} data in {origin} {source}: expected {name}/ or {expected} there")
