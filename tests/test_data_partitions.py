"""Paper Table 1 language partitions and language selection."""

from __future__ import annotations

from collections import Counter

import pytest

from kdtune import data
from kdtune.cli import main
from kdtune.errors import UsageError

# Copied by hand from the paper's Table 1 (independent of kdtune.data.massive.UNSEEN).
TABLE1_MASSIVE_UNSEEN = """am-ET cy-GB af-ZA km-KH sw-KE mn-MN tl-PH kn-IN te-IN sq-AL ur-PK az-AZ ml-IN
ms-MY ca-ES sl-SL sv-SE ta-IN nl-NL it-IT he-IL pl-PL da-DK nb-NO ro-RO th-TH fa-IR""".split()
README_LOCALES = """af-ZA am-ET ar-SA az-AZ bn-BD ca-ES cy-GB da-DK de-DE el-GR en-US es-ES fa-IR fi-FI
fr-FR he-IL hi-IN hu-HU hy-AM id-ID is-IS it-IT ja-JP jv-ID ka-GE km-KH kn-IN ko-KR lv-LV ml-IN mn-MN
ms-MY my-MM nb-NO nl-NL pl-PL pt-PT ro-RO ru-RU sl-SL sq-AL sv-SE sw-KE ta-IN te-IN th-TH tl-PH tr-TR
ur-PK vi-VN zh-CN zh-TW""".split()


def test_massive_partitions_match_table1():
    assert data.PARTITIONS == ("all", "seen", "unseen", "english")
    unseen = data.languages("massive", "unseen")
    seen = data.languages("massive", "seen")
    every = data.languages("massive", "all")
    assert len(unseen) == 27 and sorted(unseen) == sorted(TABLE1_MASSIVE_UNSEEN)
    assert "ca-ES" in unseen
    assert len(every) == 52 and every == sorted(README_LOCALES)
    assert len(seen) == 25 and set(seen) == set(README_LOCALES) - set(TABLE1_MASSIVE_UNSEEN)
    assert "en-US" in seen
    assert data.languages("massive", "english") == ["en-US"]


def test_tsm_and_synthetic_partitions():
    assert data.languages("tsm", "unseen") == ["arabic", "french", "hindi", "portuguese"]
    assert data.languages("tsm", "seen") == ["english", "german", "italian", "spanish"]
    assert len(data.languages("tsm", "all")) == 8
    assert data.languages("tsm", "english") == ["english"]
    syn_all = data.languages("synthetic", "all")
    assert len(syn_all) == 6 and "english" in syn_all
    assert set(data.languages("synthetic", "seen")) | set(data.languages("synthetic", "unseen")) == set(syn_all)
    assert not set(data.languages("synthetic", "seen")) & set(data.languages("synthetic", "unseen"))


def test_explicit_lists_and_errors():
    assert data.languages("massive", ["de-DE", "en-US", "de-DE"]) == ["de-DE", "en-US"]
    assert data.languages("tsm", "hindi,english") == ["hindi", "english"]
    with pytest.raises(UsageError, match=r"unknown partition or language 'klingon' for tsm; .*arabic, english"):
        data.languages("tsm", ["english", "klingon"])
    with pytest.raises(UsageError, match="unknown partition or language 'sen'.*partitions: all, seen, unseen, english"):
        data.languages("massive", "sen")
    with pytest.raises(UsageError, match="unknown dataset 'xnli'"):
        data.languages("xnli", "all")


def test_select_languages_keeps_only_those_rows():
    train = data.load("synthetic")["train"]
    picked = data.select_languages(train, data.languages("synthetic", "unseen"))
    assert Counter(picked["language"]) == {"arabic": 320, "cjk": 320}
    # order kept: ids appear in the same relative order as in the source
    source_order = [i for i in train["id"] if i.split(":")[0] in ("arabic", "cjk")]
    assert picked["id"] == source_order
    nested = data.select_languages(picked, ["cjk"])
    assert set(nested["language"]) == {"cjk"} and nested.num_rows == 320
    with pytest.raises(UsageError, match="language.s. greek not in the data; present: arabic, cjk"):
        data.select_languages(picked, ["greek"])
    dd = data.select_languages(data.load("synthetic"), ["english"])
    assert {s: dd[s].num_rows for s in dd} == {"train": 320, "validation": 64, "test": 96}


def test_cli_partition_errors(capsys):
    assert main(["data", "--dataset", "synthetic", "--partition", "martian"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "martian" in err and "english" in err
    assert main(["data", "--dataset", "massive", "--partition", "xx-XX"]) == 2
    assert "xx-XX" in capsys.readouterr().err
    assert main(["data", "--dataset", "wiki"]) == 2
    err = capsys.readouterr().err
    assert err == "kdtune: error: unknown dataset 'wiki'; choose one of massive, tsm, synthetic\n"


def test_partitions_inside_a_language_subset():
    subset = ["en-US", "de-DE", "ru-RU", "it-IT", "nl-NL", "pl-PL"]
    # Independent: Table 1's unseen list (copied above) split this subset by hand.
    assert data.languages("massive", "all", subset) == sorted(subset)
    assert data.languages("massive", "seen", subset) == ["de-DE", "en-US", "ru-RU"]
    assert data.languages("massive", "unseen", subset) == ["it-IT", "nl-NL", "pl-PL"]
    assert set(data.languages("massive", "unseen", subset)) <= set(TABLE1_MASSIVE_UNSEEN)
    assert data.languages("massive", "english", "de-DE,en-US") == ["en-US"]
    assert data.languages("massive", "pl-PL,en-US", subset) == ["pl-PL", "en-US"]
    assert data.languages("tsm", "seen", "all") == data.languages("tsm", "seen")
    with pytest.raises(UsageError, match="partition 'unseen' of massive has no languages within languages de-DE,en-US"):
        data.languages("massive", "unseen", "de-DE,en-US")
    with pytest.raises(UsageError, match="partition 'english' of tsm has no languages within"):
        data.languages("tsm", "english", ["german"])
    with pytest.raises(UsageError, match="language.s. fr-FR of massive not within languages en-US,de-DE"):
        data.languages("massive", ["en-US", "fr-FR"], ["en-US", "de-DE"])
    with pytest.raises(UsageError, match="unknown partition or language 'xx-XX'"):
        data.languages("massive", "all", ["en-US", "xx-XX"])


def test_build_inputs_takes_partitions_inside_the_languages_subset(shared_data):
    """Rows only: any tokenizer will do (a micro one trained on a few tweets), no teacher or sweep."""
    from kdtune.config import make_trial
    from kdtune.training.inputs import build_inputs, load_splits
    from kdtune.models.preset import PRESETS
    from kdtune.models.preset_tokenizer import train_tokenizer

    splits = load_splits("tsm", str(shared_data))
    tok = train_tokenizer(splits["train"]["text"][:200], PRESETS["micro"])
    trial = make_trial({"dataset": "tsm", "train_partition": "seen", "eval_partition": "unseen",
                        "languages": ["english", "french", "arabic"], "batch_size": 64, "max_length": 48})
    inputs = build_inputs(splits, tok, trial)
    # seen inside {english, french, arabic} = english; unseen = arabic, french (paper Table 1)
    assert inputs.train_rows == Counter(splits["train"]["language"])["english"]
    assert set(inputs.validation.languages) == {"english"}
    assert Counter(inputs.test.languages) == {lang: n for lang, n in Counter(splits["test"]["language"]).items()
                                              if lang in ("arabic", "french")}
