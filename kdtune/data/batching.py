"""Tokenization without padding, and batches padded per batch (dynamic padding).

`encode` adds `input_ids` and `attention_mask` (truncated to `max_length`, no padding) and keeps
every other column. `make_loader` feeds only input_ids, attention_mask and label to transformers'
`DataCollatorWithPadding`, which pads each batch to its longest row and renames label -> labels.

Order: `shuffle=True` draws a new permutation every epoch from a `torch.Generator` seeded with
`seed` (so epoch e is the same for the same seed). `group_by_length=True` with shuffle uses
transformers' `LengthGroupedSampler` (random mega-batches of 50 batches, each sorted by length,
seeded the same way); without shuffle it visits rows longest first (deterministic), which only
changes the order of evaluation batches, never their content.

`row_ids=True` adds a ``row`` tensor to every batch: each row's position in `encoded` (the
training selection), by which `kdtune.training.teacher_cache` finds the teacher outputs stored for it.
"""

from __future__ import annotations

MODEL_COLUMNS = ("input_ids", "attention_mask", "label")
ROW = "row"


def encode(ds, tokenizer, max_length: int):
    """`ds` with input_ids and attention_mask added (a Dataset or DatasetDict)."""
    if int(max_length) < 2:
        from kdtune.errors import UsageError

        raise UsageError(f"max_length {max_length!r} must be at least 2")

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=int(max_length))

    from kdtune.quiet import no_progress_bars

    with no_progress_bars():
        return ds.map(tokenize, batched=True, batch_size=1000)


def make_loader(
    encoded,
    tokenizer,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    group_by_length: bool = False,
    row_ids: bool = False,
):
    """A DataLoader of dicts {input_ids, attention_mask, labels} padded per batch."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
    from transformers import DataCollatorWithPadding

    columns = [c for c in MODEL_COLUMNS if c in encoded.column_names]
    data = encoded.select_columns(columns)
    if row_ids:  # the collator passes an int column through as a (batch,) tensor
        data = data.add_column(ROW, np.arange(len(data), dtype=np.int64))
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    if group_by_length:
        import pyarrow.compute as pc

        from kdtune.data.schema import arrow_columns

        ids = arrow_columns(data, ["input_ids"]).column("input_ids")  # no row decoding
        lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False).tolist()
        if shuffle:
            from transformers.trainer_pt_utils import LengthGroupedSampler

            sampler = LengthGroupedSampler(int(batch_size), lengths=lengths, generator=generator)
        else:
            sampler = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    elif shuffle:
        sampler = RandomSampler(data, generator=generator)
    else:
        sampler = SequentialSampler(data)
    return DataLoader(
        data,
        batch_size=int(batch_size),
        sampler=sampler,
        collate_fn=DataCollatorWithPadding(tokenizer, return_tensors="pt"),
    )
