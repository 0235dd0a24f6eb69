"""Student construction: exact copies, uniform selection vs independent numpy indexing, reports."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    XLMRobertaConfig,
)

from kdtune.errors import UsageError
from kdtune.models.arch import SUPPORTED, arch_for
from kdtune.models.student import build_student, student_config

FAMILIES = {"xlmr": XLMRobertaConfig, "bert": BertConfig}


def make_config(family: str, hidden=32, heads=4, layers=4, inter=64, labels=3):
    return FAMILIES[family](
        vocab_size=60, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=40, num_labels=labels,
        id2label={i: f"c{i}" for i in range(labels)}, label2id={f"c{i}": i for i in range(labels)},
    )


def make_teacher(family: str, seed=123, **kw):
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(make_config(family, **kw), attn_implementation="eager")
    with torch.no_grad():  # LayerNorms start at 1/0: randomize so that selecting them is visible
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.normal_()
    return model.eval()


def prefix(model) -> str:
    return model.base_model_prefix + "."


# --- independent expectation: roles by key suffix, indices with numpy -------------------------
# Dimension roles per tensor: h = hidden, a = attention (heads x head_dim), i = intermediate,
# - = kept. Order matters: the first matching suffix wins.
ROLES = [
    ("word_embeddings.weight", "-h"), ("position_embeddings.weight", "-h"),
    ("token_type_embeddings.weight", "-h"),
    ("self.query.weight", "ah"), ("self.key.weight", "ah"), ("self.value.weight", "ah"),
    ("self.query.bias", "a"), ("self.key.bias", "a"), ("self.value.bias", "a"),
    ("attention.output.dense.weight", "ha"), ("attention.output.dense.bias", "h"),
    ("intermediate.dense.weight", "ih"), ("intermediate.dense.bias", "i"),
    ("output.dense.weight", "hi"), ("output.dense.bias", "h"),
    ("LayerNorm.weight", "h"), ("LayerNorm.bias", "h"),
    ("pooler.dense.weight", "hh"), ("pooler.dense.bias", "h"),
    ("classifier.dense.weight", "hh"), ("classifier.dense.bias", "h"),
    ("classifier.out_proj.weight", "-h"), ("classifier.out_proj.bias", "-"),
    ("classifier.weight", "-h"), ("classifier.bias", "-"),
]


def roles_of(key: str) -> str:
    for suffix, roles in ROLES:
        if key.endswith(suffix):
            return roles
    raise KeyError(key)


def expected_indices(t_hidden, t_heads, s_hidden, t_inter, s_inter, head_mode):
    floor_sel = lambda src, dst: np.floor(np.arange(dst) * src / dst).astype(np.int64)  # noqa: E731
    d_t = t_hidden // t_heads
    if head_mode == "keep_heads":
        d_s = s_hidden // t_heads
        attn = np.concatenate([h * d_t + floor_sel(d_t, d_s) for h in range(t_heads)])
    else:
        heads = floor_sel(t_heads, s_hidden // d_t)
        attn = np.concatenate([h * d_t + np.arange(d_t) for h in heads])
    return {"h": floor_sel(t_hidden, s_hidden), "a": attn, "i": floor_sel(t_inter, s_inter)}


def source_key(student_key: str, lmap: list[int]) -> str:
    parts = student_key.split(".")
    if "layer" in parts:
        i = parts.index("layer") + 1
        parts[i] = str(lmap[int(parts[i])])
    return ".".join(parts)


# --- same width: exact copies and a forward pass ------------------------------------------------
@pytest.mark.parametrize("family", ["xlmr", "bert"])
@pytest.mark.parametrize("layer_map, lmap", [("paper", [1, 3]), ("distilbert", [0, 3]), ([0, 2], [0, 2])])
def test_teacher_init_same_width_copies_mapped_layers(family, layer_map, lmap):
    teacher = make_teacher(family)
    student, report = build_student("teacher", teacher, layer_map=layer_map)
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    assert set(s_sd) == set(report.entries)
    for key, value in s_sd.items():
        src = source_key(key, lmap)
        assert torch.equal(value, t_sd[src]), key
        assert report.entries[key].how == "copied" and report.entries[key].source == src
    p = prefix(teacher)
    unused_layers = sorted({k.split(".")[3] for k in report.unused_source_keys})
    assert unused_layers == sorted(str(i) for i in range(4) if i not in lmap)
    assert all(k.startswith(p + "encoder.layer.") for k in report.unused_source_keys)
    assert report.layer_map == lmap

    # Forward: the student equals the teacher with the unmapped layers skipped.
    skip = copy.deepcopy(teacher)
    skip.base_model.encoder.layer = nn.ModuleList([skip.base_model.encoder.layer[k] for k in lmap])
    skip.config.num_hidden_layers = len(lmap)
    student.eval()
    ids = torch.randint(3, 60, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        so = student(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        ko = skip(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        to = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert len(so.hidden_states) == 3 and len(so.attentions) == 2  # eager: attentions present
    torch.testing.assert_close(so.hidden_states[0], to.hidden_states[0], rtol=0, atol=0)
    for j in range(2):
        torch.testing.assert_close(so.hidden_states[j + 1], ko.hidden_states[j + 1], rtol=1e-6, atol=1e-6)
    if lmap[0] == 0:  # the first mapped layer sees the same input in the full teacher too
        torch.testing.assert_close(so.hidden_states[1], to.hidden_states[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(so.logits, ko.logits, rtol=1e-6, atol=1e-6)


# --- narrower student: selection equals independent numpy indexing -----------------------------
CASES = [
    # family, teacher (hidden, heads, inter), student hidden, head_mode
    ("xlmr", (32, 4, 64), 16, "keep_heads"),
    ("xlmr", (32, 4, 64), 16, "keep_head_dim"),
    ("bert", (32, 4, 64), 16, "keep_heads"),
    ("bert", (32, 4, 64), 16, "keep_head_dim"),
    ("xlmr", (96, 4, 192), 40, "keep_heads"),  # 4 heads of 24 -> 4 heads of 10
    ("bert", (96, 4, 192), 40, "keep_heads"),
    ("xlmr", (96, 12, 192), 40, "keep_head_dim"),  # 12 heads of 8 -> 5 heads of 8
    ("bert", (96, 12, 192), 40, "keep_head_dim"),
]


@pytest.mark.parametrize("family, dims, s_hidden, head_mode", CASES)
def test_teacher_init_narrow_selects_documented_indices(family, dims, s_hidden, head_mode):
    t_hidden, t_heads, t_inter = dims
    teacher = make_teacher(family, hidden=t_hidden, heads=t_heads, inter=t_inter)
    student, report = build_student("teacher", teacher, hidden=s_hidden, head_mode=head_mode)
    s_inter = t_inter * s_hidden // t_hidden
    assert student.config.hidden_size == s_hidden and student.config.intermediate_size == s_inter
    expected_heads = t_heads if head_mode == "keep_heads" else s_hidden // (t_hidden // t_heads)
    assert student.config.num_attention_heads == expected_heads
    idx = expected_indices(t_hidden, t_heads, s_hidden, t_inter, s_inter, head_mode)
    t_sd = {k: v.numpy() for k, v in teacher.state_dict().items()}
    for key, value in student.state_dict().items():
        src = source_key(key, [1, 3])
        want = t_sd[src]
        for d, role in enumerate(roles_of(key)):
            if role != "-":
                want = np.take(want, idx[role], axis=d)
        np.testing.assert_array_equal(value.numpy(), want, err_msg=key)
        entry = report.entries[key]
        assert entry.source == src and entry.source_shape == t_sd[src].shape
        assert entry.how == ("copied" if want.shape == t_sd[src].shape else "selected"), key
    # it still runs
    with torch.no_grad():
        out = student.eval()(input_ids=torch.randint(3, 60, (2, 5)), output_attentions=True)
    assert out.logits.shape == (2, 3) and out.attentions[0].shape[1] == expected_heads


# --- base and scratch ---------------------------------------------------------------------------
@pytest.mark.parametrize("family, base_kind", [("xlmr", "mlm"), ("bert", "auto"), ("bert", "dict")])
def test_base_init(family, base_kind):
    teacher = make_teacher(family)
    torch.manual_seed(7)
    cfg = make_config(family)
    if base_kind == "mlm":
        base = AutoModelForMaskedLM.from_config(cfg)
    else:
        base = AutoModel.from_config(cfg)
    base_sd = base.state_dict()
    student, report = build_student(
        "base", teacher, base.state_dict() if base_kind == "dict" else base, hidden=16, seed=5
    )
    scratch, _ = build_student("scratch", teacher, hidden=16, seed=5)
    p = prefix(teacher)
    base_prefix = p if base_kind == "mlm" else ""
    idx = expected_indices(32, 4, 16, 64, 32, "keep_heads")
    for key, value in student.state_dict().items():
        entry = report.entries[key]
        if key.startswith("classifier"):
            # fresh, drawn with the same seed as a scratch student's
            assert entry.how == "fresh" and entry.source is None
            assert torch.equal(value, scratch.state_dict()[key])
            continue
        src = base_prefix + source_key(key, [1, 3])[len(p):]
        if src not in base_sd:  # only an MLM base lacks a pooler; XLM-R classifiers have none
            raise AssertionError(f"{key}: base has no {src}")
        want = base_sd[src].numpy()
        for d, role in enumerate(roles_of(key)):
            if role != "-":
                want = np.take(want, idx[role], axis=d)
        np.testing.assert_array_equal(value.numpy(), want, err_msg=key)
        assert entry.how == "selected" and entry.source == src
    if family == "bert":
        assert report.entries["bert.pooler.dense.weight"].source == "pooler.dense.weight"
    if base_kind == "mlm":
        assert any(k.startswith("lm_head.") for k in report.unused_source_keys)


def test_base_without_pooler_gives_fresh_pooler():
    teacher = make_teacher("bert")
    base = AutoModelForMaskedLM.from_config(make_config("bert"))  # BertForMaskedLM has no pooler
    student, report = build_student("base", teacher, base, seed=3)
    scratch, _ = build_student("scratch", teacher, seed=3)
    for key in ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight"):
        assert report.entries[key].how == "fresh"
        assert torch.equal(student.state_dict()[key], scratch.state_dict()[key])
    assert report.entries["bert.encoder.layer.0.attention.self.query.weight"].how == "copied"


def test_scratch_seeds():
    teacher = make_teacher("xlmr")
    a, report = build_student("scratch", teacher, seed=0)
    b, _ = build_student("scratch", teacher, seed=0)
    c, _ = build_student("scratch", teacher, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    w = "roberta.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(sa[w], sc[w])
    assert not torch.equal(sa[w], teacher.state_dict()[w])
    assert {e.how for e in report.entries.values()} == {"fresh"} and report.unused_source_keys == []
    # the caller's RNG is left alone
    torch.manual_seed(99)
    x = torch.rand(3)
    torch.manual_seed(99)
    build_student("scratch", teacher, seed=0)
    assert torch.equal(torch.rand(3), x)


def test_report_is_complete_and_serializable():
    teacher = make_teacher("bert")
    student, report = build_student("teacher", teacher, layers=3, hidden=16)
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d["entries"]) == set(student.state_dict())
    assert d["counts"]["copied"] + d["counts"]["selected"] + d["counts"]["fresh"] == len(student.state_dict())
    assert d["layer_map"] == [0, 2, 3]  # paper, 4 -> 3: round(4/3)-1, round(8/3)-1, 4-1
    summary = report.summary()
    assert "init=teacher" in summary and "hidden 32->16" in summary and len(summary.splitlines()) <= 6
    with pytest.raises(RuntimeError):
        report.check(list(student.state_dict()) + ["bert.extra.weight"])
    del report.entries["classifier.bias"]
    with pytest.raises(RuntimeError):
        report.check(list(student.state_dict()))


def test_student_config():
    cfg = make_config("xlmr", hidden=96, heads=12, layers=6, inter=192)
    s = student_config(cfg)
    assert (s.num_hidden_layers, s.hidden_size, s.num_attention_heads, s.intermediate_size) == (3, 96, 12, 192)
    s = student_config(cfg, layers=2, hidden=48, head_mode="keep_head_dim")
    assert (s.num_hidden_layers, s.hidden_size, s.num_attention_heads, s.intermediate_size) == (2, 48, 6, 96)
    assert s.id2label == cfg.id2label and s.num_labels == 3 and s._attn_implementation == "eager"
    assert cfg.hidden_size == 96 and cfg.num_hidden_layers == 6  # the teacher's config is untouched


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"layers": 5}, "layers"),
        ({"layers": 0}, "layers"),
        ({"hidden": 40}, "hidden"),  # not a multiple of 12 heads
        ({"hidden": 20, "head_mode": "keep_head_dim"}, "hidden"),  # not a multiple of head size 8
        ({"hidden": 192}, "hidden"),
        ({"head_mode": "halve"}, "head_mode"),
    ],
)
def test_student_config_errors(kw, word):
    with pytest.raises(UsageError, match=word):
        student_config(make_config("bert", hidden=96, heads=12, inter=192), **kw)


def test_build_student_errors():
    teacher = make_teacher("xlmr")
    with pytest.raises(UsageError, match="init"):
        build_student("distil", teacher)
    with pytest.raises(UsageError, match="base"):
        build_student("base", teacher, None)
    with pytest.raises(UsageError, match="layer_map"):
        build_student("teacher", teacher, layer_map="every_other")
    with pytest.raises(UsageError, match="model_type"):
        build_student("base", teacher, AutoModel.from_config(make_config("bert")))


def test_unknown_architecture():
    with pytest.raises(UsageError) as err:
        student_config(DistilBertConfig(n_layers=2, dim=32, n_heads=4, hidden_dim=64))
    assert "distilbert" in str(err.value) and "xlm-roberta" in str(err.value) and "bert" in str(err.value)
    assert set(SUPPORTED) >= {"xlm-roberta", "roberta", "bert"}
    assert arch_for("roberta") is arch_for("xlm-roberta")
