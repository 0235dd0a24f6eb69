"""`kdtune student` end to end on tiny offline checkpoints, and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    BertConfig,
    XLMRobertaConfig,
)

from kdtune.cli import main
from kdtune.models.student import build_student

SENTENCES = ["the movie was great", "i did not like it", "what time is it", "set an alarm for nine"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
    )


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-student")
    tok = tiny_tokenizer()
    cfg = XLMRobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=24, num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2}, pad_token_id=1,
    )
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(root / "teacher")
    tok.save_pretrained(root / "teacher")
    AutoModelForMaskedLM.from_config(cfg).save_pretrained(root / "base")
    return root


def run_student(dirs, out, *extra):
    return main(["student", "--teacher", str(dirs / "teacher"), "--out", str(out), *extra])


def load(path):
    return AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager")


def test_teacher_init_round_trip(dirs, tmp_path, capsys):
    out = tmp_path / "s"
    assert run_student(dirs, out, "--init", "teacher", "--hidden", "16", "--layer-map", "0,3") == 0
    printed = capsys.readouterr().out
    assert "init=teacher" in printed and "layer_map=[0, 3]" in printed
    student = load(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == 16
    assert student.config.id2label[2] == "positive"
    teacher = load(dirs / "teacher")
    expected, _ = build_student("teacher", teacher, hidden=16, layer_map=[0, 3])
    got, want = student.state_dict(), expected.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    report = json.loads((out / "copy_report.json").read_text())
    assert report["init"] == "teacher" and report["layer_map"] == [0, 3]
    assert set(report["entries"]) == set(got)
    batch = tok(["the movie was great", "what time"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = student(**batch).logits
    assert logits.shape == (2, 3)


def test_base_init(dirs, tmp_path):
    out = tmp_path / "b"
    assert run_student(dirs, out, "--init", "base", "--base", str(dirs / "base"), "--seed", "4") == 0
    report = json.loads((out / "copy_report.json").read_text())
    fresh = sorted(k for k, e in report["entries"].items() if e["how"] == "fresh")
    assert fresh == ["classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias", "classifier.out_proj.weight"]
    student = load(out)
    base = AutoModelForMaskedLM.from_pretrained(dirs / "base")
    key = "roberta.encoder.layer.1.output.dense.weight"
    assert torch.equal(student.state_dict()[key], base.state_dict()["roberta.encoder.layer.3.output.dense.weight"])


def test_scratch_seeds(dirs, tmp_path):
    sds = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert run_student(dirs, tmp_path / name, "--init", "scratch", "--seed", seed) == 0
        sds.append(load(tmp_path / name).state_dict())
    a, b, c = sds
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--layers", "5"], "layers"),
        (["--layers", "two"], "layers"),
        (["--hidden", "18"], "hidden"),  # 4 heads: must be a multiple of 4
        (["--hidden", "20", "--head-mode", "keep_head_dim"], "hidden"),  # head size 8
        (["--layer-map", "every_other"], "layer_map"),
        (["--layer-map", "0,9"], "layer_map"),
        (["--init", "distil"], "init"),
        (["--head-mode", "halve"], "head_mode"),
        (["--init", "base"], "base"),
    ],
)
def test_bad_values_exit_2_with_one_line(dirs, tmp_path, capsys, extra, word):
    assert run_student(dirs, tmp_path / "x", *extra) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("kdtune: error: ") and word in err
    assert not (tmp_path / "x").exists()


def test_missing_teacher_dir(tmp_path, capsys):
    assert main(["student", "--teacher", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "teacher" in err and "nope" in err


def test_teacher_without_classifier_is_refused(dirs, tmp_path, capsys):
    assert main(["student", "--teacher", str(dirs / "base"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "teacher" in err


def test_base_without_pooler_gets_seeded_fresh_pooler(tmp_path):
    """A BERT MLM checkpoint has no pooler: AutoModel would invent an unseeded one; the student
    must get its own seeded pooler instead."""
    tok = tiny_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=24, num_labels=3)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(tmp_path / "t")
    tok.save_pretrained(tmp_path / "t")
    AutoModelForMaskedLM.from_config(cfg).save_pretrained(tmp_path / "b")
    common = ["student", "--teacher", str(tmp_path / "t"), "--seed", "3", "--layers", "1"]
    assert main([*common, "--init", "base", "--base", str(tmp_path / "b"), "--out", str(tmp_path / "o")]) == 0
    assert main([*common, "--init", "scratch", "--out", str(tmp_path / "s")]) == 0
    report = json.loads((tmp_path / "o" / "copy_report.json").read_text())
    assert report["entries"]["bert.pooler.dense.weight"]["how"] == "fresh"
    assert report["entries"]["bert.encoder.layer.0.output.dense.weight"]["source"] == "encoder.layer.1.output.dense.weight"
    a, b = load(tmp_path / "o").state_dict(), load(tmp_path / "s").state_dict()
    assert torch.equal(a["bert.pooler.dense.weight"], b["bert.pooler.dense.weight"])
