"""Loaders on the real files, the official MASSIVE 1.1 layout, a served tarball, XLM-T, the hub."""

from __future__ import annotations

import gzip
import http.server
import json
import tarfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from kdtune import data
from kdtune.cli import main
from kdtune.data import massive, synthetic, tsm
from kdtune.errors import UsageError


@pytest.fixture(scope="module")
def massive_dd(shared_data, kdtune_cache):
    return data.load("massive", shared_data)


@pytest.fixture(scope="module")
def tsm_dd(shared_data, kdtune_cache):
    return data.load("tsm", shared_data)


def _counts(ds, column: str) -> Counter:
    """Value counts of one column via Arrow (iterating 600k Python rows is slow)."""
    table = ds.with_format("arrow")[:]
    return Counter(table.column(column).to_pylist())


def _raw_massive_records(shared_data: Path, locale: str, n: int) -> list[dict]:
    with gzip.open(shared_data / "massive" / f"{locale}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _official(record: dict) -> dict:
    """A record with every field of the official 1.1 release (values made up where unknown)."""
    return {
        "id": record["id"],
        "locale": record["locale"],
        "partition": record["partition"],
        "scenario": record["intent"].split("_", 1)[0],
        "intent": record["intent"],
        "utt": record["utt"],
        "annot_utt": record["utt"],
        "worker_id": "7",
        "slot_method": {"slot": [], "method": []},
        "judgments": [{"worker_id": "3", "intent_score": 1, "slots_score": 1, "grammar_score": 4,
                       "spelling_score": 2, "language_identification": "target"}],
    }  # fmt: skip


def _write_official(folder: Path, shared_data: Path, locales=("en-US", "de-DE"), n=40) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for locale in locales:
        records = [_official(r) for r in _raw_massive_records(shared_data, locale, n)]
        (folder / f"{locale}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
        )
        written[locale] = records
    return written


# ------------------------------------------------------------------ real files


def test_massive_real_counts(massive_dd):
    assert set(massive_dd) == {"train", "validation", "test"}
    for split, per_locale in (("train", 11514), ("validation", 2033), ("test", 2974)):
        counts = _counts(massive_dd[split], "language")
        assert len(counts) == 52
        assert set(counts) == set(massive.LOCALES)
        assert set(counts.values()) == {per_locale}, split
    label = massive_dd["train"].features["label"]
    assert label.names == sorted(label.names) and len(label.names) == 60
    assert label.names[0] == "alarm_query" and label.names[-1] == "weather_query"
    # All 60 in train; validation lacks audio_volume_other, test lacks cooking_query (README).
    assert len(_counts(massive_dd["train"], "label")) == 60
    assert label.int2str(sorted(set(range(60)) - set(_counts(massive_dd["validation"], "label")))) == ["audio_volume_other"]
    assert label.int2str(sorted(set(range(60)) - set(_counts(massive_dd["test"], "label")))) == ["cooking_query"]
    assert max(_counts(massive_dd["train"], "id").values()) == 1  # ids unique


def test_massive_rows_match_source_file(massive_dd, shared_data):
    """Row text and label agree with an independent read of one source file."""
    raw = {r["id"]: r for r in _raw_massive_records(shared_data, "ja-JP", 10**6)}
    test = massive_dd["test"]
    rows = [test[i] for i in range(0, len(test), 997)]
    names = test.features["label"].names
    checked = 0
    for row in rows:
        locale, source_id = row["id"].split(":", 1)
        assert locale == row["language"]
        if locale != "ja-JP":
            continue
        assert raw[source_id]["partition"] == "test"
        assert raw[source_id]["utt"] == row["text"]
        assert raw[source_id]["intent"] == names[row["label"]]
        checked += 1
    ja = data.select_languages(massive_dd["train"], ["ja-JP"])
    sample = ja[5]
    source = raw[sample["id"].split(":", 1)[1]]
    assert (source["utt"], source["intent"]) == (sample["text"], names[sample["label"]])


def test_tsm_real_counts(tsm_dd, shared_data):
    for split, per_language in (("train", 1839), ("validation", 324), ("test", 870)):
        counts = _counts(tsm_dd[split], "language")
        assert set(counts) == set(tsm.LANGUAGES) and len(counts) == 8
        assert set(counts.values()) == {per_language}
        per_label = _counts(tsm_dd[split], "label")
        assert per_label == {0: per_language * 8 // 3, 1: per_language * 8 // 3, 2: per_language * 8 // 3}
    assert tsm_dd["train"].features["label"].names == ["negative", "neutral", "positive"]
    # Text is stripped (every english tweet ends with a space in the source).
    lines = (shared_data / "tsm" / "english" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    english = data.select_languages(tsm_dd["train"], ["english"])
    assert english[0]["text"] == first["text"].strip() and english[0]["label"] == first["label"]
    assert english[0]["id"] == "english:1"


def test_warm_load_reads_the_arrow_cache_without_parsing(massive_dd, shared_data, monkeypatch):
    def parse(files):
        raise AssertionError("the JSON files were parsed again")

    monkeypatch.setattr(massive, "read_local", parse)
    again = data.load("massive", shared_data)
    assert again["train"].num_rows == 52 * 11514
    # memory-mapped from the cache folder the first load wrote, not rebuilt in memory
    assert {f["filename"] for f in again["train"].cache_files} == {f["filename"] for f in massive_dd["train"].cache_files}


def test_env_var_accepts_parent_and_dataset_folder(shared_data, kdtune_cache, monkeypatch):
    monkeypatch.setenv("KDTUNE_DATA_DIR", str(shared_data))
    assert data.load("tsm")["validation"].num_rows == 8 * 324
    monkeypatch.setenv("KDTUNE_DATA_DIR", str(shared_data / "tsm"))
    assert data.load("tsm")["test"].num_rows == 8 * 870
    # An explicit data_dir wins over the env variable.
    monkeypatch.setenv("KDTUNE_DATA_DIR", "/nonexistent/folder")
    assert data.load("tsm", shared_data / "tsm")["train"].num_rows == 8 * 1839


# ------------------------------------------------------------------ other layouts


def test_massive_official_layout(tmp_path, shared_data, kdtune_cache):
    written = _write_official(tmp_path / "release" / "1.1" / "data", shared_data)
    for root in (tmp_path / "release", tmp_path / "release" / "1.1" / "data"):
        dd = data.load("massive", root)
        total = sum(dd[s].num_rows for s in dd)
        assert total == 80
        for locale, records in written.items():
            want = Counter(
                {"train": "train", "dev": "validation", "test": "test"}[r["partition"]] for r in records
            )
            got = Counter(s for s in dd for lang in dd[s]["language"] if lang == locale)
            assert got == want
        first = written["de-DE"][0]
        split = {"train": "train", "dev": "validation", "test": "test"}[first["partition"]]
        row = [r for r in dd[split] if r["id"] == f"de-DE:{first['id']}"][0]
        assert row["text"] == first["utt"]
        assert massive.INTENTS[row["label"]] == first["intent"]
    # The 1.0 release unpacks to 1.0/data/: any <version>/data folder is found.
    _write_official(tmp_path / "release10" / "1.0" / "data", shared_data, locales=("fr-FR",), n=7)
    assert sum(part.num_rows for part in data.load("massive", tmp_path / "release10").values()) == 7


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests = []
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_massive_tarball_downloaded_once(http_root, tmp_path, shared_data, kdtune_cache):
    root, base = http_root
    written = _write_official(tmp_path / "src" / "1.1" / "data", shared_data, locales=("sw-KE", "en-US", "th-TH"), n=30)
    with tarfile.open(root / "amazon-massive-dataset-1.1.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "1.1", arcname="1.1")
    url = f"{base}/amazon-massive-dataset-1.1.tar.gz"
    dd = data.load("massive", url)
    assert sum(dd[s].num_rows for s in dd) == 90
    assert sorted(set(dd["train"]["language"])) == ["en-US", "sw-KE", "th-TH"]
    th = written["th-TH"][3]
    split = {"train": "train", "dev": "validation", "test": "test"}[th["partition"]]
    assert th["utt"] in dd[split]["text"]
    assert _Handler.requests == ["/amazon-massive-dataset-1.1.tar.gz"]
    data.load("massive", url)  # second time: from the cache, no request
    assert len(_Handler.requests) == 1
    with pytest.raises(UsageError, match="cannot download .*404"):
        data.load("massive", f"{base}/missing.tar.gz")


def test_tsm_xlmt_layout(tmp_path, shared_data, kdtune_cache):
    repo = tmp_path / "xlm-t"
    expected = {}
    for lang in ("english", "hindi"):
        folder = repo / "data" / "sentiment" / lang
        folder.mkdir(parents=True)
        for split, short in (("train", "train"), ("validation", "val"), ("test", "test")):
            rows = [json.loads(line) for line in (shared_data / "tsm" / lang / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:20]]
            (folder / f"{short}_text.txt").write_text("\n".join(r["text"] for r in rows) + "\n", encoding="utf-8")
            (folder / f"{short}_labels.txt").write_text("\n".join(str(r["label"]) for r in rows) + "\n", encoding="utf-8")
            expected[(lang, split)] = rows
    (repo / "data" / "sentiment" / "all").mkdir()  # the concatenation folder is skipped
    dd = data.load("tsm", repo)
    for (lang, split), rows in expected.items():
        got = [(r["text"], r["label"]) for r in dd[split] if r["language"] == lang]
        assert got == [(r["text"].strip(), r["label"]) for r in rows]
    assert set(dd["train"]["language"]) == {"english", "hindi"}
    (repo / "data" / "sentiment" / "hindi" / "val_labels.txt").write_text("0\n1\n", encoding="utf-8")
    with pytest.raises(UsageError, match="val_text.txt has 20 lines but .*val_labels.txt has 2"):
        data.load("tsm", repo)


# ------------------------------------------------------------------ errors


def test_hub_offline_fails_fast_in_one_line(monkeypatch, capsys):
    monkeypatch.delenv("KDTUNE_DATA_DIR", raising=False)
    for name, repo in (("massive", "AmazonScience/massive"), ("tsm", "cardiffnlp/tweet_sentiment_multilingual")):
        start = time.perf_counter()
        with pytest.raises(UsageError) as err:
            data.load(name)
        assert time.perf_counter() - start < 5
        msg = str(err.value)
        assert "\n" not in msg and repo in msg and name in msg
        assert "data_dir" in msg and "KDTUNE_DATA_DIR" in msg
    # Without the offline flags the real probe runs: a dead endpoint fails just as fast.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    assert main(["data", "--dataset", "massive"]) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kdtune: error: dataset massive")
    assert "unreachable" in err and "KDTUNE_DATA_DIR" in err


def test_malformed_and_missing_files(tmp_path, shared_data, kdtune_cache, capsys):
    folder = tmp_path / "massive"
    _write_official(folder, shared_data, locales=("en-US",), n=5)
    lines = (folder / "en-US.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:-5]  # truncate line 3
    (folder / "en-US.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["data", "--dataset", "massive", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "en-US.jsonl line 3" in err and "malformed JSON" in err

    record = json.loads(lines[1])
    record["intent"] = "no_such_intent"
    lines[2] = json.dumps(record)
    (folder / "en-US.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"en-US.jsonl line 3: unknown intent 'no_such_intent'"):
        data.load("massive", tmp_path)

    tsm_dir = tmp_path / "tsm" / "french"
    tsm_dir.mkdir(parents=True)
    (tsm_dir / "train.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 5}\n', encoding="utf-8")
    (tsm_dir / "test.jsonl").write_text('{"text": "a", "label": 0}\n', encoding="utf-8")
    assert main(["data", "--dataset", "tsm", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing data file" in err and "validation.jsonl" in err
    (tsm_dir / "validation.jsonl").write_text('{"text": "a", "label": 0}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"train.jsonl line 2: label 5 is not 0, 1 or 2"):
        data.load("tsm", tmp_path)

    assert main(["data", "--dataset", "massive", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no massive data in data_dir"):
        data.load("massive", empty)
    with pytest.raises(UsageError, match="unknown dataset 'imdb'"):
        data.load("imdb")


# ------------------------------------------------------------------ synthetic


def test_synthetic_is_deterministic_parallel_and_multiscript():
    a, b = data.load("synthetic"), synthetic.generate()
    for split in ("train", "validation", "test"):
        assert a[split]["id"] == b[split]["id"] and a[split]["text"] == b[split]["text"]
    train = a["train"]
    assert train.num_rows == 6 * 8 * 40 and a["validation"].num_rows == 6 * 8 * 8
    assert Counter(train["language"]) == {lang: 320 for lang in synthetic.LANGUAGES}
    assert Counter(train["label"]) == {i: 240 for i in range(8)}
    rows = {r["id"]: r for r in train}
    # Parallel: the same utterance number has the same label in every language.
    for n in (0, 17, 301):
        labels = {rows[f"{lang}:{n}"]["label"] for lang in synthetic.LANGUAGES}
        assert len(labels) == 1
    ranges = {"cyrillic": (0x400, 0x4FF), "greek": (0x370, 0x3FF), "arabic": (0x600, 0x6FF), "cjk": (0x4E00, 0x9FFF)}
    for lang, (lo, hi) in ranges.items():
        letters = [c for c in rows[f"{lang}:5"]["text"] if not c.isspace()]
        assert letters and all(lo <= ord(c) <= hi for c in letters), lang


def test_synthetic_is_learnable_but_not_trivial():
    """A bag-of-char-ngrams classifier is well above chance (1/8) but below 100% (ambiguity);
    trained on english only it is near chance on other scripts (no shared surface forms)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    dd = data.load("synthetic")
    train, test = dd["train"], dd["test"]
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3))
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(train["text"]), train["label"])
    acc = float(np.mean(clf.predict(vec.transform(test["text"])) == np.asarray(test["label"])))
    assert 0.6 < acc < 0.97
    en = data.select_languages(train, ["english"])
    vec_en = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3))
    clf_en = LogisticRegression(max_iter=2000).fit(vec_en.fit_transform(en["text"]), en["label"])
    greek = data.select_languages(test, ["greek"])
    acc_greek = float(np.mean(clf_en.predict(vec_en.transform(greek["text"])) == np.asarray(greek["label"])))
    assert acc_greek < 0.3
