"""From a trial's data fields to tokenized loaders: the one place that selects rows.

Training rows: the training split of the training languages, stratified to `fraction`.
Validation rows (best-checkpoint choice): the validation split of the training languages, so a
zero-shot trial never peeks at its test languages. Test rows: the test split of `eval_partition`.
Evaluation sets are sorted by length once, so their batches carry little padding; the language of
each row is kept aside, in the same order, for per-language scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from kdtune import data


@dataclass
class EvalSet:
    loader: Any
    languages: list[str]


@dataclass
class Inputs:
    train_loader: Callable[[int], Any]  # epoch -> loader (the order depends on seed and epoch)
    validation: EvalSet
    test: EvalSet | None
    label_names: list[str]
    train_rows: int


def load_splits(dataset: str, data_dir: str | None):
    return data.load(dataset, data_dir)


def label_names(splits) -> list[str]:
    return list(splits["train"].features["label"].names)


def build_inputs(
    splits,
    dataset: str,
    tokenizer,
    *,
    train_partition: str,
    eval_partition: str | None,
    fraction: float,
    seed: int,
    batch_size: int,
    max_length: int,
    group_by_length: bool = True,
    eval_batch_size: int | None = None,
    languages: str = "all",
) -> Inputs:
    # Partitions and `languages` are names or comma lists; `data.languages` reads both.
    train_langs = data.languages(dataset, train_partition, languages)
    train = data.select_languages(splits["train"], train_langs)
    if fraction < 1.0:
        train = data.stratified_fraction(train, fraction, seed)
    train_enc = data.encode(train, tokenizer, max_length)

    def train_loader(epoch: int):
        return data.make_loader(
            train_enc, tokenizer, batch_size, shuffle=True, seed=seed * 1000 + epoch,
            group_by_length=group_by_length, row_ids=True,
        )

    eval_bs = eval_batch_size or max(batch_size, 64)
    val = eval_set(data.select_languages(splits["validation"], train_langs), tokenizer, max_length, eval_bs)
    test = None
    if eval_partition is not None:
        test_langs = data.languages(dataset, eval_partition, languages)
        test = eval_set(data.select_languages(splits["test"], test_langs), tokenizer, max_length, eval_bs)
    return Inputs(train_loader, val, test, label_names(splits), len(train))


def eval_set(rows, tokenizer, max_length: int, batch_size: int) -> EvalSet:
    import numpy as np
    import pyarrow.compute as pc

    enc = data.encode(rows, tokenizer, max_length)
    lengths = pc.list_value_length(enc.with_format("arrow")["input_ids"]).to_numpy(zero_copy_only=False)
    enc = enc.select(np.argsort(lengths, kind="stable"))
    loader = data.make_loader(enc, tokenizer, batch_size, shuffle=False)
    return EvalSet(loader, list(enc["language"]))
