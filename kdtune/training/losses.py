"""TinyBERT knowledge-distillation losses (paper eq. 1-4) and their weighted sum.

Pairing (index convention of `kdtune.models.layer_map`): student layer ``j`` is matched with
teacher layer ``k = layer_map[j]``; with transformers' outputs that is ``attentions[j]`` vs
``attentions[k]`` and ``hidden_states[j + 1]`` vs ``hidden_states[k + 1]`` (``hidden_states[0]``
is the embedding output, used by L_emb).

Masking, with ``m[b, t] = attention_mask[b, t]`` (1 = real token, 0 = padding):

- L_att: for each mapped layer and student head, the MSE over the (query, key) pairs where both
  tokens are real, ``sum_{b,q,k} m[b,q] m[b,k] (A_S - A_T)^2 / sum_{b,q,k} m[b,q] m[b,k]``,
  then averaged over layers and heads (eq. 1). ``A`` is the map `kdtune.models.attention` hands
  back, taken *before* attention dropout: the softmax probabilities (``att_target="probs"``) or
  the scaled scores before mask and softmax (``"scores"``, TinyBERT's); padded pairs never enter
  the sum. When the student has fewer
  heads than the teacher, student head ``h`` is compared with teacher head ``head_map[h]``; by
  default ``head_map`` is uniform selection over heads, the same map the weight copy uses with
  ``head_mode="keep_head_dim"`` (`kdtune.models.selection.head_map`).
- L_hid: per mapped layer ``sum_{b,t} m[b,t] ||H_S - H_T||^2 / (sum m * D)`` (mean squared error
  over real tokens and the D compared features), averaged over layers (eq. 2).
- L_emb: the same on ``hidden_states[0]`` (eq. 3).
- L_pred: MSE on the logits, mean over batch and classes (eq. 4, no temperature).
- L_clf: cross entropy of the student logits with the labels.

``total = sum_name weights.name * L_name``. A term whose weight is 0 is not computed (its value is
a zero tensor), and so is L_hid / L_emb under ``hidden_match="skip"`` when the widths differ.

Width mismatch (`HIDDEN_MATCH`): ``linear`` learns the paper's projection W (eq. 2-3; TinyBERT's
W_h: student -> teacher width, one matrix shared by L_hid and L_emb as in the paper's equations
and TinyBERT's code; default; its parameters must go into the optimizer). ``select`` compares the
student with the teacher features at the uniform-selection indices used for the weight copy (no
parameters), ``skip`` drops L_hid and L_emb. Equal widths always compare directly (the paper's
identity W).

Gradients: teacher outputs are constants. The caller produces them under
``torch.inference_mode()`` (or ``no_grad``); the loss only subtracts them from student tensors,
an operation that saves no teacher tensor for backward, so inference tensors are accepted and no
gradient ever flows into the teacher. The code has no ``.item()`` and no loop over heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdtune.config import HIDDEN_MATCH
from kdtune.errors import UsageError
from kdtune.models.selection import head_map as select_heads, uniform_indices

TERMS = ("att", "hid", "emb", "pred", "clf")


@dataclass
class KDWeights:
    """Weights of the loss terms in ``total`` (paper: all 1)."""

    att: float = 1.0
    hid: float = 1.0
    emb: float = 1.0
    pred: float = 1.0
    clf: float = 1.0


class HiddenMatch(nn.Module):
    """Maps (student, teacher) hidden states to one width for L_hid and L_emb.

    `used` records what is applied: ``identity`` (equal widths, whatever the mode), ``select``,
    ``linear`` or ``skip``. Move it to the training device with ``.to(device)`` (the selection
    indices are a buffer); with ``linear`` its parameters (drawn from the global torch RNG) must be
    given to the optimizer together with the student's.
    """

    def __init__(self, student_hidden: int, teacher_hidden: int, mode: str = "linear"):
        super().__init__()
        if mode not in HIDDEN_MATCH:
            raise UsageError(f"hidden_match: unknown value {mode!r}; allowed: {', '.join(HIDDEN_MATCH)}")
        if student_hidden > teacher_hidden:
            raise UsageError(f"hidden: student width {student_hidden} exceeds the teacher's {teacher_hidden}")
        self.mode = mode
        self.used = "identity" if student_hidden == teacher_hidden else mode
        self.proj = nn.Linear(student_hidden, teacher_hidden) if self.used == "linear" else None
        index = uniform_indices(teacher_hidden, student_hidden) if self.used == "select" else torch.empty(0, dtype=torch.long)
        self.register_buffer("index", index, persistent=False)

    @property
    def active(self) -> bool:
        """False when L_hid and L_emb are skipped."""
        return self.used != "skip"

    def forward(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
        if self.used == "select":
            return student, teacher.index_select(-1, self.index)
        if self.used == "linear":
            return self.proj(student), teacher
        return student, teacher


def _float_mask(attention_mask: Tensor | None, batch: int, length: int, device) -> Tensor:
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.float32, device=device)
    return attention_mask.to(device=device, dtype=torch.float32)


def attention_loss(student_att, teacher_att, mask: Tensor, layer_map: list[int], head_map: list[int] | None = None) -> Tensor:
    """L_att (see module doc). `student_att`: per-layer (B, H, L, L) tensors; `teacher_att`: the
    same indexed by teacher layer (a sequence of every layer, or a mapping holding the mapped
    ones); `mask`: (B, L) float, 1 for real tokens."""
    s = torch.stack(tuple(student_att))  # (l, B, Hs, L, L)
    t = torch.stack([teacher_att[k] for k in layer_map])  # (l, B, Ht, L, L)
    n_layers, hs, ht = s.shape[0], s.shape[2], t.shape[2]
    if head_map is None:
        head_map = select_heads(ht, hs)
    if head_map is not None:
        if len(head_map) != hs or any(not 0 <= h < ht for h in head_map):
            raise ValueError(f"head_map {list(head_map)} does not fit {hs} student and {ht} teacher heads")
        if list(head_map) != list(range(ht)):
            t = t.index_select(2, torch.as_tensor(head_map, dtype=torch.long, device=t.device))
    pair = mask[:, :, None] * mask[:, None, :]  # (B, L, L): 1 where query and key are real
    # where(), not a product: a padded pair's value never enters the sum, whatever it holds
    diff = torch.where(pair[None, :, None] > 0, (s - t).float(), 0.0)
    return (diff * diff).sum() / (pair.sum() * (n_layers * hs))


def hidden_loss(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Masked MSE over real tokens and features of (..., B, L, D) tensors, averaged over any
    leading (layer) dimensions; `mask` is (B, L) float."""
    diff = (student - teacher).float()
    per_token = (diff * diff).sum(-1)  # (..., B, L)
    n_stacked = per_token.numel() // mask.numel()
    return (per_token * mask).sum() / (mask.sum() * (student.shape[-1] * n_stacked))


def kd_losses(
    student_out,
    teacher_out,
    labels: Tensor | None,
    attention_mask: Tensor | None,
    layer_map: list[int],
    weights: KDWeights,
    hidden_match: HiddenMatch,
    head_map: list[int] | None = None,
) -> dict[str, Tensor]:
    """The five loss terms and their weighted ``total`` (keys: att, hid, emb, pred, clf, total).

    `student_out` / `teacher_out` have ``.logits``, ``.hidden_states`` and ``.attentions`` (run
    the models with ``output_hidden_states=True, output_attentions=True`` and the attention of
    `kdtune.models.attention`); ``teacher_out.attentions`` may be a mapping {teacher layer: map}
    holding only the mapped layers;
    `attention_mask` is the batch's (B, L) mask (None: no padding); `labels` the gold class ids
    (needed when ``weights.clf`` is not 0).
    """
    logits = student_out.logits
    out = {name: logits.new_zeros((), dtype=torch.float32) for name in TERMS}
    use_att = bool(weights.att)
    use_hid = bool(weights.hid) and hidden_match.active
    use_emb = bool(weights.emb) and hidden_match.active
    mask = None
    if use_att:
        s_att, t_att = student_out.attentions, teacher_out.attentions
        if not s_att or not t_att:
            raise ValueError("attentions are empty: use kdtune.models.attention.use_kd_attention and output_attentions=True")
        if len(s_att) != len(layer_map):
            raise ValueError(f"layer_map has {len(layer_map)} entries, the student has {len(s_att)} layers")
        b, _, length, _ = s_att[0].shape
        mask = _float_mask(attention_mask, b, length, logits.device)
        out["att"] = attention_loss(s_att, t_att, mask, layer_map, head_map)
    if use_hid or use_emb:
        sh, th = student_out.hidden_states, teacher_out.hidden_states
        if not sh or not th:
            raise ValueError("hidden_states are missing: pass output_hidden_states=True")
        if len(sh) - 1 != len(layer_map):
            raise ValueError(f"layer_map has {len(layer_map)} entries, the student has {len(sh) - 1} layers")
        if mask is None:
            mask = _float_mask(attention_mask, sh[0].shape[0], sh[0].shape[1], logits.device)
        if use_hid:
            s, t = hidden_match(torch.stack(sh[1:]), torch.stack([th[k + 1] for k in layer_map]))
            out["hid"] = hidden_loss(s, t, mask)
        if use_emb:
            s, t = hidden_match(sh[0], th[0])
            out["emb"] = hidden_loss(s, t, mask)
    if weights.pred:
        diff = (logits - teacher_out.logits).float()
        out["pred"] = (diff * diff).mean()
    if weights.clf:
        if labels is None:
            raise ValueError("labels are needed for the classification loss (weights.clf != 0)")
        out["clf"] = nonkd_loss(logits, labels)
    out["total"] = weighted_total(out, weights)
    return out


def weighted_total(terms: dict[str, Tensor], weights: KDWeights) -> Tensor:
    """sum over TERMS of weight x term (the terms a zero weight skipped are zero tensors)."""
    total = terms[TERMS[0]] * getattr(weights, TERMS[0])
    for name in TERMS[1:]:
        total = total + terms[name] * getattr(weights, name)
    return total


def nonkd_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross entropy of the logits with the gold labels (L_clf; the whole loss without KD)."""
    return F.cross_entropy(logits.float(), labels)
