"""KD loss terms vs hand computations (explicit loops over valid positions), and gradient flow."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification, XLMRobertaConfig

from kdtune.training.losses import HIDDEN_MATCH, HiddenMatch, KDWeights, kd_losses, nonkd_loss
from kdtune.errors import UsageError

B, L, C = 2, 4, 3
T_LAYERS, T_HEADS, T_WIDTH = 4, 4, 8
S_LAYERS = 2
LMAP = [1, 3]
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])


def fake_outputs(layers, heads, width, seed):
    g = torch.Generator().manual_seed(seed)
    att = tuple(torch.rand(B, heads, L, L, generator=g).softmax(-1) for _ in range(layers))
    hid = tuple(torch.randn(B, L, width, generator=g) for _ in range(layers + 1))
    return SimpleNamespace(attentions=att, hidden_states=hid, logits=torch.randn(B, C, generator=g))


def hand_att(s, t, head_map):
    """mean over (layer, student head) of the MSE over pairs with real query and key."""
    per = []
    for j, k in enumerate(LMAP):
        for h, th in enumerate(head_map):
            sq = [
                (float(s.attentions[j][b, h, q, kk]) - float(t.attentions[k][b, th, q, kk])) ** 2
                for b in range(B) for q in range(L) for kk in range(L) if MASK[b, q] and MASK[b, kk]
            ]
            per.append(sum(sq) / len(sq))
    return sum(per) / len(per)


def hand_state_mse(s_state, t_state, features):
    """MSE over real tokens and the given teacher features (student: all its features)."""
    sq = [
        (float(s_state[b, q, i]) - float(t_state[b, q, f])) ** 2
        for b in range(B) for q in range(L) if MASK[b, q] for i, f in enumerate(features)
    ]
    return sum(sq) / len(sq)


def hand_clf(logits, labels):
    total = 0.0
    for b in range(B):
        row = [float(x) for x in logits[b]]
        total += math.log(sum(math.exp(x) for x in row)) - row[int(labels[b])]
    return total / B


@pytest.fixture
def pair():
    return fake_outputs(S_LAYERS, 2, 4, seed=1), fake_outputs(T_LAYERS, T_HEADS, T_WIDTH, seed=2)


LABELS = torch.tensor([2, 0])


def test_terms_select_narrow_student(pair):
    s, t = pair
    out = kd_losses(s, t, LABELS, MASK, LMAP, KDWeights(), HiddenMatch(4, 8, "select"))
    feats = [0, 2, 4, 6]  # floor(i * 8 / 4)
    assert out["att"].item() == pytest.approx(hand_att(s, t, [0, 2]), rel=1e-5)  # heads floor(h*4/2)
    hid = sum(hand_state_mse(s.hidden_states[j + 1], t.hidden_states[k + 1], feats) for j, k in enumerate(LMAP)) / 2
    assert out["hid"].item() == pytest.approx(hid, rel=1e-5)
    assert out["emb"].item() == pytest.approx(hand_state_mse(s.hidden_states[0], t.hidden_states[0], feats), rel=1e-5)
    pred = sum((float(a) - float(b)) ** 2 for a, b in zip(s.logits.flatten(), t.logits.flatten())) / (B * C)
    assert out["pred"].item() == pytest.approx(pred, rel=1e-5)
    assert out["clf"].item() == pytest.approx(hand_clf(s.logits, LABELS), rel=1e-5)
    assert nonkd_loss(s.logits, LABELS).item() == pytest.approx(hand_clf(s.logits, LABELS), rel=1e-5)
    total = sum(out[k].item() for k in ("att", "hid", "emb", "pred", "clf"))
    assert out["total"].item() == pytest.approx(total, rel=1e-5)


def test_padding_is_excluded(pair):
    s, t = pair
    base = kd_losses(s, t, LABELS, MASK, LMAP, KDWeights(), HiddenMatch(4, 8, "select"))
    # change the teacher only at padded positions: nothing may move
    t2 = SimpleNamespace(
        attentions=tuple(a.clone() for a in t.attentions),
        hidden_states=tuple(h.clone() for h in t.hidden_states), logits=t.logits,
    )
    for a in t2.attentions:
        a[1, :, 2:, :] += 5.0  # padded query rows
        a[1, :, :, 2:] += 5.0  # padded key columns
    for h in t2.hidden_states:
        h[1, 2:] -= 3.0
    moved = kd_losses(s, t2, LABELS, MASK, LMAP, KDWeights(), HiddenMatch(4, 8, "select"))
    for k in ("att", "hid", "emb", "total"):
        assert torch.equal(base[k], moved[k]), k
    # ... while without a mask they do count
    nomask = kd_losses(s, t2, LABELS, None, LMAP, KDWeights(), HiddenMatch(4, 8, "select"))
    assert nomask["att"] > base["att"] and nomask["hid"] > base["hid"]


def test_explicit_head_map_and_equal_heads():
    s, t = fake_outputs(S_LAYERS, 2, 8, 3), fake_outputs(T_LAYERS, T_HEADS, 8, 4)
    out = kd_losses(s, t, LABELS, MASK, LMAP, KDWeights(hid=0, emb=0, pred=0, clf=0), HiddenMatch(8, 8), head_map=[3, 1])
    assert out["att"].item() == pytest.approx(hand_att(s, t, [3, 1]), rel=1e-5)
    assert out["total"].item() == pytest.approx(out["att"].item(), rel=1e-6)
    s4 = fake_outputs(S_LAYERS, T_HEADS, 8, 5)
    out = kd_losses(s4, t, LABELS, MASK, LMAP, KDWeights(), HiddenMatch(8, 8))
    assert out["att"].item() == pytest.approx(hand_att(s4, t, [0, 1, 2, 3]), rel=1e-5)
    hid = sum(hand_state_mse(s4.hidden_states[j + 1], t.hidden_states[k + 1], range(8)) for j, k in enumerate(LMAP)) / 2
    assert out["hid"].item() == pytest.approx(hid, rel=1e-5)


def test_linear_match(pair):
    s, t = pair
    match = HiddenMatch(4, 8, "linear")
    assert match.used == "linear" and sum(p.numel() for p in match.parameters()) == 4 * 8 + 8
    out = kd_losses(s, t, LABELS, MASK, LMAP, KDWeights(att=0, pred=0, clf=0), match)
    w, bias = match.proj.weight.detach(), match.proj.bias.detach()
    proj = lambda x: x @ w.T + bias  # noqa: E731
    hid = sum(hand_state_mse(proj(s.hidden_states[j + 1]), t.hidden_states[k + 1], range(8)) for j, k in enumerate(LMAP)) / 2
    assert out["hid"].item() == pytest.approx(hid, rel=1e-5)
    assert out["emb"].item() == pytest.approx(hand_state_mse(proj(s.hidden_states[0]), t.hidden_states[0], range(8)), rel=1e-5)
    out["total"].backward()
    assert match.proj.weight.grad is not None and match.proj.weight.grad.abs().sum() > 0


def test_skip_and_zero_weights(pair):
    s, t = pair
    out = kd_losses(s, t, LABELS, MASK, LMAP, KDWeights(), HiddenMatch(4, 8, "skip"))
    assert out["hid"].item() == 0 and out["emb"].item() == 0
    assert out["total"].item() == pytest.approx(out["att"].item() + out["pred"].item() + out["clf"].item(), rel=1e-6)
    w = KDWeights(att=0.0, hid=2.0, emb=0.5, pred=0.0, clf=3.0)
    # zero-weighted terms are not computed: empty attentions must not matter
    s2 = SimpleNamespace(attentions=(), hidden_states=s.hidden_states, logits=s.logits)
    out = kd_losses(s2, t, LABELS, MASK, LMAP, w, HiddenMatch(4, 8, "select"))
    assert out["att"].item() == 0 and out["pred"].item() == 0
    total = 2.0 * out["hid"].item() + 0.5 * out["emb"].item() + 3.0 * out["clf"].item()
    assert out["total"].item() == pytest.approx(total, rel=1e-6)
    assert HiddenMatch(8, 8, "skip").used == "identity"


def test_errors(pair):
    s, t = pair
    with pytest.raises(UsageError, match="hidden_match"):
        HiddenMatch(4, 8, "pca")
    with pytest.raises(ValueError, match="layer_map"):
        kd_losses(s, t, LABELS, MASK, [0, 1, 2], KDWeights(), HiddenMatch(4, 8))
    empty = SimpleNamespace(attentions=(), hidden_states=s.hidden_states, logits=s.logits)
    with pytest.raises(ValueError, match="use_kd_attention"):
        kd_losses(empty, t, LABELS, MASK, LMAP, KDWeights(), HiddenMatch(4, 8))
    assert HIDDEN_MATCH == ("linear", "select", "skip")


def test_gradients_reach_only_the_student():
    cfg = dict(vocab_size=40, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=20, num_labels=3)
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(
        XLMRobertaConfig(hidden_size=32, **cfg), attn_implementation="eager").eval()
    cfg["num_hidden_layers"] = 2
    student = AutoModelForSequenceClassification.from_config(
        XLMRobertaConfig(hidden_size=16, **cfg), attn_implementation="eager").train()
    ids = torch.randint(3, 40, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[0, 4:] = 0
    with torch.inference_mode():
        t_out = teacher(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    s_out = student(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    match = HiddenMatch(16, 32, "linear")
    out = kd_losses(s_out, t_out, torch.tensor([1, 2]), mask, LMAP, KDWeights(), match)
    for name in ("att", "hid", "emb", "pred", "clf"):
        assert out[name].requires_grad and out[name].item() > 0, name
    out["total"].backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is not None for p in match.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert t_out.logits.is_inference()
