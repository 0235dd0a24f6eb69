"""Architecture specs: what each state-dict tensor of an encoder classifier is.

Works on state-dict key patterns and the config, not on module attribute names, so the weight copy
in `kdtune.models.student` is the same code for every supported family. A key is
``[<prefix>.]<rest>`` where the prefix is the base model's name (``roberta.`` / ``bert.``) in task
and MLM models and absent in a bare `AutoModel`. Each recognised tensor has a *part*
(``embeddings``, ``layer`` with its layer index, ``pooler``, ``classifier``) and a *role* for every
dimension:

- ``hidden``: the residual stream width (hidden_size); shrinks by plain uniform selection;
- ``attn``: an attention inner dimension, heads x head_dim (Q/K/V output, O input); shrinks by
  head-aware selection (`kdtune.models.selection.attention_indices`);
- ``inter``: the feed-forward width (intermediate_size); uniform selection;
- ``vocab``, ``pos``, ``type``, ``labels``: never shrink (they must match between models).

Supported `model_type`s: see `SUPPORTED`. Keys a spec does not recognise (MLM heads, buffers) are
``None`` from `ArchSpec.parse`: a caller copying *from* a model reports them unused, a caller
copying *into* a model must treat them as an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kdtune.errors import UsageError

HIDDEN, ATTN, INTER = "hidden", "attn", "inter"
VOCAB, POS, TYPE, LABELS = "vocab", "pos", "type", "labels"
SHRINKING_ROLES = (HIDDEN, ATTN, INTER)


@dataclass(frozen=True)
class TensorInfo:
    """What one state-dict key is: `rest` is the key without prefix (and, for layers, without
    ``encoder.layer.<i>.``), so two keys with the same part/rest are the same tensor kind."""

    part: str
    layer: int | None
    rest: str
    roles: tuple[str, ...]


# (pattern on the key without prefix, part, roles); for layers the pattern sees the rest after
# "encoder.layer.<i>.". The embedding and encoder layout is shared by BERT and (XLM-)RoBERTa.
_BODY = (
    (r"embeddings\.word_embeddings\.weight", "embeddings", (VOCAB, HIDDEN)),
    (r"embeddings\.position_embeddings\.weight", "embeddings", (POS, HIDDEN)),
    (r"embeddings\.token_type_embeddings\.weight", "embeddings", (TYPE, HIDDEN)),
    (r"embeddings\.LayerNorm\.(weight|bias)", "embeddings", (HIDDEN,)),
    (r"pooler\.dense\.weight", "pooler", (HIDDEN, HIDDEN)),
    (r"pooler\.dense\.bias", "pooler", (HIDDEN,)),
)
_LAYER = (
    (r"attention\.self\.(query|key|value)\.weight", (ATTN, HIDDEN)),
    (r"attention\.self\.(query|key|value)\.bias", (ATTN,)),
    (r"attention\.output\.dense\.weight", (HIDDEN, ATTN)),
    (r"attention\.output\.dense\.bias", (HIDDEN,)),
    (r"attention\.output\.LayerNorm\.(weight|bias)", (HIDDEN,)),
    (r"intermediate\.dense\.weight", (INTER, HIDDEN)),
    (r"intermediate\.dense\.bias", (INTER,)),
    (r"output\.dense\.weight", (HIDDEN, INTER)),
    (r"output\.dense\.bias", (HIDDEN,)),
    (r"output\.LayerNorm\.(weight|bias)", (HIDDEN,)),
)
_LAYER_KEY = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
# Sequence-classification heads (keys carry no prefix).
_ROBERTA_HEAD = (
    (r"classifier\.dense\.weight", (HIDDEN, HIDDEN)),
    (r"classifier\.dense\.bias", (HIDDEN,)),
    (r"classifier\.out_proj\.weight", (LABELS, HIDDEN)),
    (r"classifier\.out_proj\.bias", (LABELS,)),
)
_BERT_HEAD = (
    (r"classifier\.weight", (LABELS, HIDDEN)),
    (r"classifier\.bias", (LABELS,)),
)


@dataclass(frozen=True)
class ArchSpec:
    """Key patterns of one model family. `prefix` is the base-model key prefix (no dot)."""

    name: str
    model_types: tuple[str, ...]
    prefix: str
    head: tuple[tuple[str, tuple[str, ...]], ...]

    def split_prefix(self, key: str) -> str:
        """The key without the base-model prefix (keys without it are returned unchanged)."""
        p = self.prefix + "."
        return key[len(p):] if key.startswith(p) else key

    def parse(self, key: str) -> TensorInfo | None:
        """Classify `key` (with or without prefix); None when it is not a known tensor."""
        had_prefix = key.startswith(self.prefix + ".")
        rest = self.split_prefix(key)
        if not had_prefix:  # head keys never carry the prefix
            for pattern, roles in self.head:
                if re.fullmatch(pattern, rest):
                    return TensorInfo("classifier", None, rest, roles)
        m = _LAYER_KEY.fullmatch(rest)
        if m:
            for pattern, roles in _LAYER:
                if re.fullmatch(pattern, m.group(2)):
                    return TensorInfo("layer", int(m.group(1)), m.group(2), roles)
            return None
        for pattern, part, roles in _BODY:
            if re.fullmatch(pattern, rest):
                return TensorInfo(part, None, rest, roles)
        return None

    def key(self, info: TensorInfo, with_prefix: bool) -> str:
        """Rebuild a key for `info` (layer index included), the inverse of `parse`."""
        if info.part == "classifier":
            return info.rest
        rest = f"encoder.layer.{info.layer}.{info.rest}" if info.part == "layer" else info.rest
        return f"{self.prefix}.{rest}" if with_prefix else rest

    def has_prefix(self, keys) -> bool:
        """Whether a state dict's body keys carry the prefix (task/MLM model) or not (AutoModel)."""
        return any(k.startswith(self.prefix + ".") for k in keys)


_SPECS = (
    ArchSpec("xlm-roberta", ("xlm-roberta", "roberta"), "roberta", _ROBERTA_HEAD),
    ArchSpec("bert", ("bert",), "bert", _BERT_HEAD),
)
SUPPORTED = tuple(t for s in _SPECS for t in s.model_types)


def arch_for(model_type_or_config) -> ArchSpec:
    """The spec for a config (or a `model_type` string); UsageError listing supported types."""
    model_type = getattr(model_type_or_config, "model_type", model_type_or_config)
    for spec in _SPECS:
        if model_type in spec.model_types:
            return spec
    raise UsageError(
        f"model_type {model_type!r} is not supported for student construction; supported: {', '.join(SUPPORTED)}"
    )
