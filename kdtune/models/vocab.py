"""Used-vocabulary embedding tables: train only the rows of the token ids a trial's data holds.

A 250k-piece vocabulary (xlm-roberta-base, multilingual-e5-small) is most of a student's
parameters, and a trial's rows use a small part of it. A row whose token never occurs gets a
zero gradient at every step, so under AdamW it only decays: it is multiplied by (1 - lr_t * w)
at each step t (weight decay w; not at all at the paper's w = 0), and its Adam moments stay 0.
Training a table of the used rows alone and putting the others back, decayed by the product of
those factors, is therefore the same computation (the gradient norm for clipping is summed in
another order: float rounding only).

- `used_ids`: the sorted token ids of the rows (training, validation and test, so that
  evaluation sees the same embeddings) plus the special ids (pad: the collator pads with it and
  XLM-R derives position ids from it).
- `trim`: the model's input embedding becomes a `UsedVocabEmbedding`, which takes the original
  ids (data, teacher and teacher cache keep them) and holds the used rows, sliced from the table
  the model was built with (initialisation draws the same random numbers as without the trim).
- `restore_full`: back to an `nn.Embedding` of the full vocabulary (what `save_pretrained`
  writes), the unused rows as built, times the closed-form decay `decay_factor`.
- `fit_checkpoint` / `fit_optimizer`: a checkpoint written with the full table (or with
  the trim switched on when it is now off) still resumes.

A model whose output layer is tied to its input embeddings (an MLM head) is never trimmed: its
unused rows get gradients through the output layer.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

# Trim only where it pays: when the rows it drops hold at least this share of the model's
# parameters (AdamW's update and the dense embedding gradient cost in proportion to them).
PAYS_FROM = 0.10
IDS = "ids"  # the state-dict name of the table's original token ids (beside `weight`)


class UsedVocabEmbedding(nn.Module):
    """An embedding over the original token ids that stores only the rows of `ids`."""

    def __init__(self, full: nn.Embedding, ids: torch.Tensor):
        super().__init__()
        ids = torch.as_tensor(ids, dtype=torch.long, device=full.weight.device)
        self.num_embeddings, self.embedding_dim = full.num_embeddings, full.embedding_dim
        self.full_padding_idx = full.padding_idx
        # The table as built (unused rows are restored from it; the replaced module's storage, no
        # copy). A plain attribute on the CPU: not a parameter (no gradient, no optimizer state),
        # not moved to the training device.
        self.full = full.weight.detach().to("cpu")
        self.weight = nn.Parameter(full.weight.detach()[ids])  # indexing copies
        self.register_buffer(IDS, ids.clone())  # in checkpoints: what the rows are
        remap = torch.full((full.num_embeddings,), -1, dtype=torch.long, device=ids.device)
        remap[ids] = torch.arange(len(ids), device=ids.device)
        self.register_buffer("remap", remap, persistent=False)
        self.padding_idx = int(remap[full.padding_idx]) if full.padding_idx is not None else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        index = self.remap[input_ids]
        # An id outside the table is a bug in `used_ids`: fail loudly, never read another row.
        # (On CUDA the lookup's own bounds check asserts; a check here would sync every step.)
        if index.device.type == "cpu" and not torch.compiler.is_compiling() and bool((index < 0).any()):
            missing = sorted(set(input_ids[index < 0].tolist()))[:10]
            raise IndexError(f"token ids {missing} are not in the used-vocabulary table (kdtune.models.vocab)")
        return F.embedding(index, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        return f"{len(self.ids)} of {self.num_embeddings} rows, {self.embedding_dim}"


def used_ids(datasets: Iterable, special: Iterable[int | None] = ()) -> torch.Tensor:
    """Sorted unique token ids of the encoded rows (`input_ids` columns) and the `special` ids."""
    import numpy as np
    import pyarrow.compute as pc

    from kdtune.data.schema import arrow_columns

    parts = [np.asarray([i for i in special if i is not None], dtype=np.int64)]
    for ds in datasets:
        ids = arrow_columns(ds, ["input_ids"]).column("input_ids")
        parts.append(pc.unique(pc.list_flatten(ids)).to_numpy(zero_copy_only=False).astype(np.int64))
    return torch.from_numpy(np.unique(np.concatenate(parts)))


def special_ids(tokenizer, model) -> list[int]:
    """Ids the model reads beside the data's: every special token, and the padding ids."""
    pad = getattr(model.get_input_embeddings(), "padding_idx", None)
    return [*tokenizer.all_special_ids, tokenizer.pad_token_id, model.config.pad_token_id, pad]


def is_tied(model) -> bool:
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return out is not None and out.weight is model.get_input_embeddings().weight


def pays(model, ids: torch.Tensor) -> bool:
    emb = model.get_input_embeddings()
    dropped = (emb.num_embeddings - len(ids)) * emb.embedding_dim
    return dropped >= PAYS_FROM * sum(p.numel() for p in model.parameters())


def trim(model, ids: torch.Tensor) -> UsedVocabEmbedding:
    """Replace the model's input embedding by the used rows `ids` (in place); returns the table."""
    emb = model.get_input_embeddings()
    if isinstance(emb, UsedVocabEmbedding):
        raise ValueError("the model's embedding table is trimmed already")
    if is_tied(model):
        raise ValueError("a model whose output layer is tied to its input embeddings cannot be trimmed")
    ids = torch.as_tensor(ids, dtype=torch.long)
    table = UsedVocabEmbedding(emb, ids)
    model.set_input_embeddings(table)
    return table


def trim_where_it_pays(model, ids: torch.Tensor) -> bool:
    """`trim` unless the model is tied or the rows it drops hold under `PAYS_FROM` of the model's
    parameters (measured: no gain there, docs/performance.md)."""
    if is_tied(model) or not pays(model, ids):
        return False
    trim(model, ids)
    return True


def trimmed(model) -> UsedVocabEmbedding | None:
    """The model's used-vocabulary table; None when it has none (or no input embedding at all)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return emb if isinstance(emb, UsedVocabEmbedding) else None


def decay_factor(lrs: Iterable[float], weight_decay: float) -> float:
    """What AdamW's decoupled weight decay multiplies a zero-gradient row by over steps with
    learning rates `lrs`: prod_t (1 - lr_t * w). 1 at w = 0."""
    if weight_decay == 0:
        return 1.0
    return math.prod(1.0 - lr * weight_decay for lr in lrs)


def restore_full(model, decay: float = 1.0) -> bool:
    """Put the full table back (in place): the unused rows as built times `decay`, the used rows
    as trained. Returns False when the model was not trimmed."""
    table = trimmed(model)
    if table is None:
        return False
    w = table.weight.detach()
    full = (table.full.to(w.device, w.dtype) * decay) if decay != 1.0 else table.full.to(w.device, w.dtype, copy=True)
    full[table.ids] = w
    emb = nn.Embedding(table.num_embeddings, table.embedding_dim, padding_idx=table.full_padding_idx,
                       device=w.device, dtype=w.dtype, _weight=full)
    emb.weight.requires_grad_(table.weight.requires_grad)
    model.set_input_embeddings(emb)
    return True


def _key(model) -> str:
    """The state-dict prefix of the model's input embedding (e.g. 'roberta.embeddings.word_embeddings')."""
    emb = model.get_input_embeddings()
    return next(name for name, module in model.named_modules() if module is emb)


def fit_checkpoint(model, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` (a state dict from a checkpoint) made to load into `model`: a full table is sliced
    to the model's used rows; a trimmed one trims an untrimmed model to its rows."""
    if not hasattr(model, "get_input_embeddings"):  # not a transformers model: nothing to fit
        return weights
    prefix = _key(model)
    w_key, ids_key = f"{prefix}.weight", f"{prefix}.{IDS}"
    table = trimmed(model)
    if ids_key in weights:
        if table is None:  # written trimmed, the trim now off: continue on the checkpoint's rows
            trim(model, weights[ids_key])
        elif not torch.equal(weights[ids_key].cpu(), table.ids.cpu()):
            raise ValueError("the checkpoint's used-vocabulary table holds other token ids than this trial's")
        return weights
    if table is None or w_key not in weights or weights[w_key].shape[0] != table.num_embeddings:
        return weights
    return {**weights, w_key: weights[w_key][table.ids.cpu()], ids_key: table.ids.cpu()}


def fit_optimizer(model, params: list, optimizer_state: dict | None) -> dict | None:
    """An optimizer state written with the full table, sliced to the used rows. `params` is the
    optimizer's parameter list in order (the table's moments are found by its position)."""
    table = trimmed(model)
    if table is None or not optimizer_state:
        return optimizer_state
    index = next(i for i, p in enumerate(params) if p is table.weight)
    moments = optimizer_state["state"].get(index)
    if not moments:
        return optimizer_state
    rows = table.ids.cpu()
    fitted = {k: v[rows.to(v.device)] if torch.is_tensor(v) and v.dim() == 2 and v.shape[0] == table.num_embeddings
              else v for k, v in moments.items()}
    return {**optimizer_state, "state": {**optimizer_state["state"], index: fitted}}
