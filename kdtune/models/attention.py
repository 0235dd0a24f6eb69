"""The attention maps the KD loss reads, taken before attention dropout.

transformers' eager attention returns its probabilities *after* ``nn.functional.dropout``: in
train mode a student row no longer sums to 1, and an MSE against it gains a variance term of about
``a^2 p / (1 - p)`` per element whose gradient pulls every KD student towards flat attention. So
kdtune registers its own attention implementation (transformers' ``AttentionInterface``), named
``KD_ATTENTION``, which computes the same output as eager attention but hands back, as the layer's
attention weights, one of two targets taken before dropout:

- ``probs``: the softmax probabilities (the paper's "attention outputs"; default);
- ``scores``: the scaled scores ``q.k * scaling`` before the padding mask and the softmax
  (TinyBERT's target). No ``-inf`` or ``-1e4`` mask value reaches them; the loss keeps padded
  queries and keys out of the MSE (`kdtune.training.losses.attention_loss`).

Which layers hand back a map is set per self-attention module with `read_attention`: a layer
that no loss reads (most teacher layers, every layer at evaluation time) runs transformers' SDPA
kernel and returns no map, so ``outputs.attentions`` holds only the read layers, in layer order.

The padding mask is transformers' SDPA mask (boolean, True = attend; None when nothing is padded),
which both paths accept.
"""

from __future__ import annotations

import torch
from torch import nn

from kdtune.config import ATT_TARGETS
from kdtune.errors import UsageError

KD_ATTENTION = "kdtune_kd"
_SLOT = "kdtune_att_target"  # attribute on a self-attention module: the target it returns, or None


def kd_attention_forward(module: nn.Module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, **kwargs):
    """(output, weights) with eager attention's output; weights = the pre-dropout target or None."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    target = getattr(module, _SLOT, None)
    if target is None or not kwargs.get("output_attentions", False):
        kwargs.pop("output_attentions", None)  # sdpa warns about it; nothing is returned here anyway
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    masked = scores
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            masked = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:  # an additive float mask (eager's format), should a caller build one
            masked = scores + attention_mask
    probs = nn.functional.softmax(masked, dim=-1)
    output = torch.matmul(nn.functional.dropout(probs, p=dropout, training=module.training), value)
    return output.transpose(1, 2).contiguous(), probs if target == "probs" else scores


def register() -> None:
    """Make `KD_ATTENTION` known to transformers (idempotent; every process that builds models)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(KD_ATTENTION, kd_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(KD_ATTENTION, sdpa_mask)


def self_attentions(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every encoder layer, in order (BERT-family layout)."""
    return [layer.attention.self for layer in model.base_model.encoder.layer]


def use_kd_attention(model: nn.Module, read_layers=(), target: str = "probs") -> nn.Module:
    """Switch `model` to `KD_ATTENTION`; the layers in `read_layers` return `target` maps when the
    forward asks for attentions, every other layer runs SDPA. Returns the model."""
    if target not in ATT_TARGETS:
        raise ValueError(f"att_target {target!r}; allowed: {', '.join(ATT_TARGETS)}")
    if not getattr(model, "_supports_attention_backend", False):
        # Older transformers (BERT and XLM-R before 5.0) keep their own attention classes: the switch
        # below would be ignored and L_att would read post-dropout maps, silently.
        import transformers

        raise UsageError(f"{type(model).__name__} does not route attention through transformers' AttentionInterface "
                         f"(transformers {transformers.__version__}); kdtune's KD attention needs transformers>=5.0")
    register()
    model.set_attn_implementation(KD_ATTENTION)
    layers = self_attentions(model)
    read = set(read_layers)
    if not read <= set(range(len(layers))):
        raise ValueError(f"read_layers {sorted(read)} outside the model's {len(layers)} layers")
    for i, module in enumerate(layers):
        setattr(module, _SLOT, target if i in read else None)
    return model


def read_layers(model: nn.Module) -> list[int]:
    """The layers whose maps `outputs.attentions` holds, in order."""
    return [i for i, m in enumerate(self_attentions(model)) if getattr(m, _SLOT, None) is not None]


def attention_by_layer(model: nn.Module, attentions) -> dict[int, torch.Tensor] | tuple:
    """`outputs.attentions` keyed by layer index. A model under `KD_ATTENTION` hands back only its
    read layers; any other model (eager attention) hands back every layer, returned as it is."""
    if getattr(model.config, "_attn_implementation", None) != KD_ATTENTION:
        return attentions
    layers = read_layers(model)
    if len(layers) != len(attentions):
        raise ValueError(f"{len(attentions)} attention maps for read layers {layers}")
    return dict(zip(layers, attentions))
