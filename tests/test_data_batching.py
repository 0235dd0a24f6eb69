"""Tokenization without padding, per-batch padding, seeded shuffling and length grouping."""

from __future__ import annotations

import pytest

from kdtune import data
from kdtune.models.preset import PRESETS
from kdtune.models.preset_tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    train = data.load("synthetic")["train"]
    return train_tokenizer(list(train["text"]), PRESETS["micro"])


@pytest.fixture(scope="module")
def encoded(tokenizer):
    return data.encode(data.load("synthetic")["train"], tokenizer, max_length=12)


def test_encode_truncates_without_padding(encoded, tokenizer):
    assert {"input_ids", "attention_mask", "label", "language"} <= set(encoded.column_names)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    assert max(lengths) == 12 and min(lengths) < 12  # truncated, not padded
    row = encoded[7]
    full = tokenizer(row["text"])["input_ids"]
    assert row["input_ids"] == (full if len(full) <= 12 else full[:11] + [tokenizer.eos_token_id])
    assert row["input_ids"][0] == tokenizer.bos_token_id and row["input_ids"][-1] == tokenizer.eos_token_id
    assert all(m == 1 for m in row["attention_mask"])


def test_loader_pads_per_batch(encoded, tokenizer):
    loader = data.make_loader(encoded, tokenizer, batch_size=16, shuffle=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    labels = encoded["label"]
    for b, batch in enumerate(loader):
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        want = lengths[b * 16 : (b + 1) * 16]
        assert batch["input_ids"].shape == (len(want), max(want))
        assert batch["attention_mask"].sum(1).tolist() == want
        assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()
        assert batch["labels"].tolist() == labels[b * 16 : (b + 1) * 16]
    assert b == (len(lengths) - 1) // 16


def _rows(loader):
    out = []
    for batch in loader:
        for ids, mask, label in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
            out.append((tuple(ids[mask.bool()].tolist()), int(label)))
    return out


def test_shuffle_is_seeded_and_complete(encoded, tokenizer):
    everything = sorted(zip(map(tuple, encoded["input_ids"]), encoded["label"]))
    a = _rows(data.make_loader(encoded, tokenizer, 32, shuffle=True, seed=1))
    b = _rows(data.make_loader(encoded, tokenizer, 32, shuffle=True, seed=1))
    c = _rows(data.make_loader(encoded, tokenizer, 32, shuffle=True, seed=2))
    assert a == b and a != c
    assert sorted(a) == everything and sorted(c) == everything
    loader = data.make_loader(encoded, tokenizer, 32, shuffle=True, seed=1)
    assert _rows(loader) != _rows(loader)  # a new order each epoch, same sequence for the same seed


def test_length_grouping_reduces_padding(encoded, tokenizer):
    def padding(loader):
        pads = total = 0
        for batch in loader:
            pads += int((batch["attention_mask"] == 0).sum())
            total += batch["attention_mask"].numel()
        return pads / total

    everything = sorted(zip(map(tuple, encoded["input_ids"]), encoded["label"]))
    grouped = data.make_loader(encoded, tokenizer, 32, shuffle=True, seed=3, group_by_length=True)
    random_order = data.make_loader(encoded, tokenizer, 32, shuffle=True, seed=3)
    assert sorted(_rows(grouped)) == everything
    assert padding(grouped) < 0.5 * padding(random_order)
    assert _rows(data.make_loader(encoded, tokenizer, 32, True, seed=3, group_by_length=True)) == _rows(
        data.make_loader(encoded, tokenizer, 32, True, seed=3, group_by_length=True)
    )
    longest_first = data.make_loader(encoded, tokenizer, 32, shuffle=False, group_by_length=True)
    widths = [batch["input_ids"].shape[1] for batch in longest_first]
    assert widths == sorted(widths, reverse=True)
    assert sorted(_rows(longest_first)) == everything


def test_bad_max_length(tokenizer):
    from kdtune.errors import UsageError

    with pytest.raises(UsageError, match="max_length"):
        data.encode(data.load("synthetic")["test"], tokenizer, max_length=1)
