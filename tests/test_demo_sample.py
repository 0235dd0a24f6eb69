"""The MASSIVE sample packaged with kdtune (`data_dir: kdtune:sample`), read by the MASSIVE loader."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from kdtune import data
from kdtune.data.sources import SAMPLE_DIR
from kdtune.errors import UsageError

SAMPLE = SAMPLE_DIR / "massive" / "massive.jsonl.gz"
LOCALES = ["de-DE", "en-US", "es-ES", "fr-FR", "it-IT"]
SPLIT = {"train": "train", "dev": "validation", "test": "test"}


def raw_records() -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def sample(kdtune_cache):
    return data.load("massive", "kdtune:sample")


def test_sample_is_small_parallel_stratified_and_licensed(sample):
    assert SAMPLE.stat().st_size < 1024**2
    notice = (SAMPLE.parent / "NOTICE.md").read_text()
    assert "CC BY 4.0" in notice and "Amazon" in notice and "SLURP" in notice
    assert [p.name for p in SAMPLE.parent.iterdir() if p.suffix == ".gz"] == ["massive.jsonl.gz"]

    records = raw_records()
    assert len(records) < 5000 and sorted({r["locale"] for r in records}) == LOCALES
    # Parallel: every locale has the same ids, each with the same partition and intent.
    by_locale = {loc: {r["id"]: (r["partition"], r["intent"]) for r in records if r["locale"] == loc} for loc in LOCALES}
    assert all(by_locale[loc] == by_locale["en-US"] for loc in LOCALES)
    # Stratified: every intent of MASSIVE's train split is in the sample's train split.
    train_intents = {intent for part, intent in by_locale["en-US"].values() if part == "train"}
    assert len(train_intents) == 60

    # The loader returns exactly the file's rows, per split and language.
    for split in ("train", "validation", "test"):
        expected = Counter((r["locale"], r["intent"]) for r in records if SPLIT[r["partition"]] == split)
        names = sample[split].features["label"].names
        got = Counter(zip(sample[split]["language"], (names[i] for i in sample[split]["label"])))
        assert got == expected, split
    row = next(r for r in records if r["locale"] == "fr-FR" and r["partition"] == "test")
    i = list(sample["test"]["id"]).index(f"fr-FR:{row['id']}")
    assert sample["test"][i]["text"] == row["utt"]


def test_sample_rows_are_the_source_records(shared_data):
    """Each sampled record equals the record of the same locale and id in the full MASSIVE files."""
    records = raw_records()
    wanted = {(r["locale"], r["id"]): r for r in records}
    found = 0
    for locale in LOCALES:
        with gzip.open(shared_data / "massive" / f"{locale}.jsonl.gz", "rt", encoding="utf-8") as handle:
            for line in handle:
                source = json.loads(line)
                mine = wanted.get((locale, source["id"]))
                if mine is not None:
                    assert mine == {k: source[k] for k in mine}, (locale, source["id"])
                    found += 1
    assert found == len(records)


def test_sweep_languages_must_lie_in_the_sample(sample):
    assert data.select_languages(sample["train"], LOCALES).num_rows == sample["train"].num_rows
    with pytest.raises(UsageError, match="not in the data; present: de-DE, en-US, es-ES, fr-FR, it-IT"):
        data.select_languages(sample["train"], ["pl-PL"])


def test_combined_file_errors_name_the_file_and_line(tmp_path, kdtune_cache):
    folder = tmp_path / "massive"
    folder.mkdir()
    good = {"id": "1", "locale": "en-US", "partition": "train", "utt": "wake me up", "intent": "alarm_set"}
    (folder / "massive.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, "locale": "xx-YY"}) + "\n")
    with pytest.raises(UsageError, match=r"massive\.jsonl line 2: locale 'xx-YY' is not a MASSIVE locale"):
        data.load("massive", tmp_path)
    no_locale = {k: v for k, v in good.items() if k != "locale"}
    (folder / "massive.jsonl").write_text(json.dumps(no_locale) + "\n")
    with pytest.raises(UsageError, match=r"massive\.jsonl line 1: missing field\(s\) locale"):
        data.load("massive", tmp_path)
    # Per-locale files win over a combined file in the same folder.
    (folder / "en-US.jsonl").write_text(json.dumps(no_locale) + "\n")
    assert list(data.load("massive", tmp_path)["train"]["language"]) == ["en-US"]


def test_unknown_alias_like_source_is_a_folder_error(tmp_path):
    with pytest.raises(UsageError, match="kdtune:nothing is not a folder"):
        data.load("massive", "kdtune:nothing")
    assert Path(SAMPLE_DIR).is_dir()
