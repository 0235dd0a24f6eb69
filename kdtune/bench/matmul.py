"""The machine's own dense matmul FLOP/s: the denominator of the MFU.

Measured in the same process and run as the training it is compared with, on the shapes the
training multiplies: the six matrix products of one encoder layer (`flops.layer_gemms`) with as
many rows as a typical batch has tokens, back to back. That is what "the hardware could do on this
work" means on a CPU, where a GEMM's speed depends little on its size but a lot on the machine's
load and thread count. A large square product is measured too, as a reference point.

Precision: the one training uses for its matrix products (fp32 on CPU; bf16 on CUDA when the KD
path runs under bf16 autocast).
"""

from __future__ import annotations

import torch

from kdtune.bench.timing import Spread, rate_samples


def gemm_rate(
    shapes: list[tuple[int, int, int]],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    min_seconds: float = 0.2,
    seed: int = 0,
) -> Spread:
    """FLOP/s of running the (M, K, N) products `shapes` back to back (2*M*K*N FLOPs each)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    pairs = [
        (torch.randn(m, k, generator=g).to(device, dtype), torch.randn(k, n, generator=g).to(device, dtype))
        for m, k, n in shapes
    ]
    flops = float(sum(2 * m * k * n for m, k, n in shapes))
    outs = [torch.empty(m, n, device=device, dtype=dtype) for m, _, n in shapes]

    def once() -> float:
        for (a, b), out in zip(pairs, outs):
            torch.matmul(a, b, out=out)
        return flops

    return rate_samples(once, device, repeats, min_seconds=min_seconds)


def square_rate(size: int, device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 5) -> Spread:
    """FLOP/s of one (size x size) @ (size x size) product, repeated."""
    return gemm_rate([(size, size, size)], device, dtype, repeats)
