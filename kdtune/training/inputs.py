"""From a trial's data fields to tokenized loaders: the one place that selects rows.

`build_inputs` reads the data fields of a whole `TrialConfig` (dataset, languages, partitions,
fraction, seed, batch size, max length, length grouping); `teacher_inputs` is the same selection
for the teacher of a trial. Training rows: the training split of the training languages,
stratified to `fraction`.
Validation rows (best-checkpoint choice): the validation split of the training languages, so a
zero-shot trial never peeks at its test languages. Test rows: the test split of `eval_partition`.
Evaluation sets are sorted by length once, so their batches carry little padding; the language of
each row is kept aside, in the same order, for per-language scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from kdtune import data
from kdtune.config import TeacherSpec, TrialConfig


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


def build_inputs(splits, tokenizer, trial: TrialConfig, *, test: bool = True,
                 eval_batch_size: int | None = None) -> Inputs:
    """The trial's rows as loaders; `test=False` leaves the test set out (`Inputs.test` is None)."""
    t = trial
    # Partitions and `languages` are names or comma lists; `data.languages` reads both.
    train_langs = data.languages(t.dataset, t.train_partition, t.languages)
    train = data.select_languages(splits["train"], train_langs)
    if t.fraction < 1.0:
        train = data.stratified_fraction(train, t.fraction, t.seed)
    train_enc = data.encode(train, tokenizer, t.max_length)

    def train_loader(epoch: int):
        return data.make_loader(
            train_enc, tokenizer, t.batch_size, shuffle=True, seed=t.seed * 1000 + epoch,
            group_by_length=t.group_by_length, row_ids=True,
        )

    eval_bs = eval_batch_size or max(t.batch_size, 64)
    val = eval_set(data.select_languages(splits["validation"], train_langs), tokenizer, t.max_length, eval_bs)
    test_set = None
    if test:
        test_langs = data.languages(t.dataset, t.eval_partition, t.languages)
        test_set = eval_set(data.select_languages(splits["test"], test_langs), tokenizer, t.max_length, eval_bs)
    return Inputs(train_loader, val, test_set, label_names(splits), len(train))


def teacher_inputs(splits, tokenizer, spec: TeacherSpec, seed: int) -> Inputs:
    """The rows a teacher fine-tunes on with `seed`: every training row of its languages (no
    fraction), in teacher batches, and their validation split; no test set."""
    rows = TrialConfig(dataset=spec.dataset, languages=spec.languages, train_partition=spec.partition, fraction=1.0,
                       seed=seed, batch_size=spec.batch_size, max_length=spec.max_length,
                       group_by_length=spec.group_by_length)
    return build_inputs(splits, tokenizer, rows, test=False)


def eval_set(rows, tokenizer, max_length: int, batch_size: int) -> EvalSet:
    import numpy as np
    import pyarrow.compute as pc

    enc = data.encode(rows, tokenizer, max_length)
    lengths = pc.list_value_length(enc.with_format("arrow")["input_ids"]).to_numpy(zero_copy_only=False)
    enc = enc.select(np.argsort(lengths, kind="stable"))
    loader = data.make_loader(enc, tokenizer, batch_size, shuffle=False)
    return EvalSet(loader, list(enc["language"]))
