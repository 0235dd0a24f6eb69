"""The teacher's KD outputs, computed once per teacher and data selection, read by every KD trial.

Every KD trial of a sweep runs the same eval-mode teacher over the same training rows, epoch
after epoch (Table 2: 36 KD students x 30 epochs). The teacher is frozen and in eval mode, so its
output for a row does not depend on the trial, the epoch or the batch the row lands in. This
module stores exactly what `kdtune.training.losses.kd_losses` reads, per training row and unpadded:

- ``logits``            (rows, labels);
- ``hidden.npy``        (tokens, H, D): per real token, the stored hidden states, ``hidden_layers``
                        indices of transformers' ``hidden_states`` (0 = the embedding output,
                        k + 1 = teacher layer k's output): the embeddings when L_emb is on, the
                        mapped layers when L_hid is on;
- ``att.npy``           (pairs, A, heads): per real (query, key) pair of a row, row-major, the
                        maps of the A mapped layers in the trial's ``att_target``, taken before
                        dropout as `kdtune.models.attention` returns them (when L_att is on);
- ``lengths.npy``       (rows,): real tokens per row (offsets are its cumulative sums).

Rows are identified by their position in the encoded training selection (the ``row`` tensor of a
training batch, `kdtune.data.batching`), which is deterministic for a data selection: the key
covers the selection (dataset, languages, partition, fraction and, below 100 %, the seed that
draws it), ``max_length``, and a fingerprint of the encoded token ids in row order, so a cache is
never read for other rows. A lookup rebuilds the teacher's outputs for any batch the trial's
sampler assembles, padded to that batch's length; padded positions hold zeros, which the losses
never read (they mask padding out).

Precision: stored as the teacher produced it (fp32 on CPU; under CUDA bf16 autocast, LayerNorm
and softmax outputs are fp32 and the logits and ``scores`` maps bf16, stored as such). The compute
regime (fp32 or bf16) is part of the key, so a cache is read only under the regime it was built in.

The folder is ``<teacher>/kd-cache/<key>/``, inside the teacher store: written into a temporary
folder under a file lock, its marker (`DONE`) written last, then renamed into place; a killed
write leaves only a ``.tmp-`` folder that is never read and is removed by the next build. Files
are ``.npy`` arrays read memory-mapped (numpy), so concurrent trials share the page cache.

Where it pays: the teacher forward is about 40 % of a KD step on CPU (8 of 20 layer-forwards with
the small preset), and the cache turns it into memory copies. Where it does not: its size is
about ``tokens x (H x D) + pairs x A x heads`` floats per selection (docs/performance.md sizes the
paper's full MASSIVE grid at about 217 GB); when the estimate exceeds the free disk space the
trial runs the teacher instead (logged), and ``teacher_cache: false`` switches it off.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch

from kdtune.atomic import build_once

FORMAT = 1
DONE = "cache.json"
FOLDER = "kd-cache"
FREE_SPACE_SHARE = 0.8  # build only when the estimate fits in this share of the free disk space
COUNTS: collections.Counter = collections.Counter()  # "built" / "reused" / "skipped", this process


@dataclass(frozen=True)
class CacheSpec:
    """Everything that decides the stored values; `key` hashes it."""

    teacher_key: str
    dataset: str
    languages: str
    train_partition: str
    fraction: float
    seed: int | None  # draws the rows only below 100 %: None at fraction 1 (every seed shares)
    max_length: int
    hidden_layers: tuple[int, ...]
    att_layers: tuple[int, ...]
    att_target: str | None
    compute: str  # fp32 or bf16
    rows: int
    fingerprint: str  # sha256 of the encoded token ids, row by row
    format: int = FORMAT

    @property
    def key(self) -> str:
        from kdtune.config import stable_hash

        return stable_hash(dataclasses.asdict(self))


def fingerprint(rows) -> str:
    """sha256 over the rows' token ids and lengths, in row order (no row decoding)."""
    import pyarrow.compute as pc

    from kdtune.data.schema import arrow_columns

    ids = arrow_columns(rows, ["input_ids"]).column("input_ids")
    h = hashlib.sha256()
    h.update(pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
    h.update(pc.list_flatten(ids).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
    return h.hexdigest()


def row_lengths(rows) -> np.ndarray:
    import pyarrow.compute as pc

    from kdtune.data.schema import arrow_columns

    ids = arrow_columns(rows, ["input_ids"]).column("input_ids")
    return pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)


def needs(distiller) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(hidden_states indices, attention layers) the trial's losses read (`kd_losses`)."""
    w, layer_map = distiller.weights, distiller.layer_map
    hidden: list[int] = []
    if distiller.hidden_match.active:
        hidden = ([0] if w.emb else []) + ([k + 1 for k in layer_map] if w.hid else [])
    return tuple(sorted(set(hidden))), tuple(sorted(set(layer_map))) if w.att else ()


def spec_for(built, rows, compute: str) -> CacheSpec:
    t = built.trial
    hidden, att = needs(built.distiller)
    return CacheSpec(
        teacher_key=t.teacher_key, dataset=t.dataset, languages=t.languages, train_partition=t.train_partition,
        fraction=t.fraction, seed=t.seed if t.fraction < 1 else None, max_length=t.max_length,
        hidden_layers=hidden, att_layers=att, att_target=t.att_target if att else None, compute=compute,
        rows=len(rows), fingerprint=fingerprint(rows),
    )


def estimate_bytes(lengths: np.ndarray, teacher_config, hidden_layers, att_layers, bytes_per_value: int = 4) -> int:
    """Disk size of a cache for rows of these real lengths (the formula of the module doc)."""
    tokens, pairs = int(lengths.sum()), int((lengths**2).sum())
    c = teacher_config
    values = (len(lengths) * c.num_labels + tokens * len(hidden_layers) * c.hidden_size
              + pairs * len(att_layers) * c.num_attention_heads)
    return values * bytes_per_value + lengths.nbytes


def compute_regime(device: torch.device, precision: str) -> str:
    """How the teacher's numbers are computed, part of the cache key: bf16 autocast, fp32 products
    on TF32 tensor cores (CUDA, precision auto without bf16), or full fp32 (`precision: fp32`)."""
    from kdtune.training.runtime import autocast_for, uses_tf32

    if isinstance(autocast_for(device, precision), torch.autocast):
        return "bf16"
    return "tf32" if uses_tf32(device, precision) else "fp32"


def attach(built, device: torch.device, log: Callable[[str], None] = lambda msg: None) -> str:
    """Give `built.distiller` the trial's cache, building it first if needed.

    Returns what happened: ``built``, ``reused``, ``off`` (no KD, or ``teacher_cache: false``) or
    ``skipped: <why>`` (the trial then runs the teacher as usual)."""
    trial, distiller = built.trial, built.distiller
    if distiller is None or not trial.teacher_cache:
        return "off"
    rows = built.inputs.train_loader(0).dataset
    spec = spec_for(built, rows, compute_regime(device, trial.precision))
    folder = Path(built.teacher_dir) / FOLDER / spec.key

    def build(tmp: Path) -> None:
        lengths = row_lengths(rows)
        size = estimate_bytes(lengths, distiller.teacher.config, spec.hidden_layers, spec.att_layers)
        free = shutil.disk_usage(folder.parent).free
        if size > FREE_SPACE_SHARE * free:
            raise _NoRoom(f"needs {size / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
        log(f"teacher cache: building {folder} ({len(lengths)} rows, {size / 2**20:.0f} MiB)")
        tmp.mkdir()
        write(tmp, distiller.teacher, rows, lengths, spec, built.tokenizer, device, trial.precision)

    try:
        made = build_once(folder, build, done=is_complete)
    except _NoRoom as no_room:
        COUNTS["skipped"] += 1
        log(f"teacher cache: not built ({no_room}); running the teacher instead")
        return f"skipped: {no_room}"
    if not made:
        log(f"teacher cache: reusing {folder}")
    COUNTS["built" if made else "reused"] += 1
    distiller.teacher_cache = TeacherCache(folder)
    return "built" if made else "reused"


class _NoRoom(Exception):
    """Not enough free disk for the cache: the trial runs the teacher instead."""


def is_complete(folder: Path) -> bool:
    return (folder / DONE).is_file()


def write(folder: Path, teacher, rows, lengths: np.ndarray, spec: CacheSpec, tokenizer, device: torch.device,
          precision: str, batch_size: int = 64) -> None:
    """Run the teacher over every row (longest first, little padding) and fill the arrays."""
    from numpy.lib.format import open_memmap

    from kdtune.data import make_loader
    from kdtune.models.attention import attention_by_layer
    from kdtune.training.runtime import autocast_for, fast_matmul, to_device
    from kdtune.training.loop import teacher_outputs

    c = teacher.config
    tok_off = np.concatenate([[0], np.cumsum(lengths)])
    pair_off = np.concatenate([[0], np.cumsum(lengths**2)])
    teacher.to(device).eval().requires_grad_(False)
    flags = {"output_hidden_states": bool(spec.hidden_layers), "output_attentions": bool(spec.att_layers)}
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}

    def array(name: str, shape: tuple, value: torch.Tensor) -> np.ndarray:
        if name not in arrays:  # opened at the first batch: the dtype is what the teacher produced
            dtypes[name] = str(value.dtype).replace("torch.", "")
            arrays[name] = open_memmap(folder / f"{name}.npy", mode="w+", dtype=_np_dtype(value.dtype), shape=shape)
        return arrays[name]

    loader = make_loader(rows, tokenizer, batch_size, shuffle=False, group_by_length=True, row_ids=True)
    for batch in loader:
        row = batch["row"].numpy()
        mask = batch["attention_mask"].bool()
        b = to_device(batch, device)
        with fast_matmul(device, precision), autocast_for(device, precision):  # as the live teacher runs
            out = teacher_outputs(teacher, {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}, flags)
        logits = out.logits.detach().cpu()
        array("logits", (len(lengths), c.num_labels), logits)[row] = _np(logits)
        if spec.hidden_layers:
            h = torch.stack([out.hidden_states[i] for i in spec.hidden_layers], 2).cpu()  # (B, L, H, D)
            array("hidden", (int(tok_off[-1]), len(spec.hidden_layers), c.hidden_size), h)[
                _positions(tok_off, row)] = _np(h[mask])
        if spec.att_layers:
            maps = attention_by_layer(teacher, out.attentions)
            a = torch.stack([maps[k] for k in spec.att_layers], -1).permute(0, 2, 3, 4, 1).cpu()  # (B, L, L, A, heads)
            pair = mask[:, :, None] & mask[:, None, :]
            array("att", (int(pair_off[-1]), len(spec.att_layers), c.num_attention_heads), a)[
                _positions(pair_off, row)] = _np(a[pair])
    for arr in arrays.values():
        arr.flush()
    np.save(folder / "lengths.npy", lengths)
    meta = {"spec": dataclasses.asdict(spec), "dtypes": dtypes,
            "bytes": sum((folder / f"{n}.npy").stat().st_size for n in arrays)}
    _mark_done(folder, meta)


def _mark_done(folder: Path, meta: dict) -> None:
    """Written last: the marker of a complete cache (a write killed before it is never read)."""
    (folder / DONE).write_text(json.dumps(meta, indent=2))


class TeacherCache:
    """A complete cache, memory-mapped; `outputs` rebuilds the teacher's outputs for a batch."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        meta = json.loads((self.folder / DONE).read_text())
        self.spec = meta["spec"]
        self.dtypes = meta["dtypes"]
        self.bytes = meta["bytes"]
        self.lengths = np.load(self.folder / "lengths.npy")
        self.tok_off = np.concatenate([[0], np.cumsum(self.lengths)])
        self.pair_off = np.concatenate([[0], np.cumsum(self.lengths**2)])
        self.arrays = {n: np.load(self.folder / f"{n}.npy", mmap_mode="r") for n in self.dtypes}

    def _read(self, name: str, index: np.ndarray) -> torch.Tensor:
        return _torch(np.ascontiguousarray(self.arrays[name][index]), self.dtypes[name])

    def outputs(self, rows: torch.Tensor, attention_mask: torch.Tensor, device: torch.device) -> SimpleNamespace:
        """``logits``, ``hidden_states`` ({index: (B, L, D)}) and ``attentions`` ({layer: (B, heads,
        L, L)}) as `kd_losses` reads them, padded to the batch's length with zeros."""
        if rows is None:
            raise ValueError("teacher cache: the batch has no row ids (make_loader(row_ids=True))")
        row = rows.cpu().numpy()
        mask = attention_mask.cpu().bool()
        n = self.lengths[row]
        if not np.array_equal(mask.sum(-1).numpy(), n):
            raise ValueError(f"teacher cache {self.folder}: the batch's row lengths do not match the cache's")
        b, length = mask.shape
        out = SimpleNamespace(logits=self._read("logits", row).to(device), hidden_states=None, attentions=None)
        hidden = self.spec["hidden_layers"]
        if hidden:
            values = self._read("hidden", _positions(self.tok_off, row))  # (tokens, H, D)
            padded = values.new_zeros((b, length, *values.shape[1:]))
            padded[mask] = values
            padded = padded.to(device)
            out.hidden_states = {i: padded[:, :, j] for j, i in enumerate(hidden)}
        att = self.spec["att_layers"]
        if att:
            values = self._read("att", _positions(self.pair_off, row))  # (pairs, A, heads)
            padded = values.new_zeros((b, length, length, *values.shape[1:]))
            padded[mask[:, :, None] & mask[:, None, :]] = values
            padded = padded.to(device).permute(3, 0, 4, 1, 2)  # (A, B, heads, L, L)
            out.attentions = {k: padded[j] for j, k in enumerate(att)}
        return out


def _positions(offsets: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Flat positions of the rows' entries, row after row: offsets[r] .. offsets[r + 1] - 1 each."""
    sizes = offsets[row + 1] - offsets[row]
    starts = np.repeat(offsets[row] - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    return starts + np.arange(int(sizes.sum()))


def _np_dtype(dtype: torch.dtype):
    return np.int16 if dtype == torch.bfloat16 else torch.empty((), dtype=dtype).numpy().dtype


def _np(t: torch.Tensor) -> np.ndarray:
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _torch(a: np.ndarray, dtype: str) -> torch.Tensor:
    t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t
