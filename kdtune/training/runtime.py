"""Where and how training runs: the device, the numeric precision, and torch's random state.

Shared by the training loop (`kdtune.training.loop`), teachers, the teacher cache and the benchmark.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """torch's global random state: what dropout draws from (data order has its own seeds)."""
    rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def pick_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_for(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def uses_tf32(device: torch.device, precision: str) -> bool:
    """TF32 tensor cores for fp32 matrix products: on CUDA, unless the trial asked for fp32, which
    means full fp32 (the paper's setting, transformers' default)."""
    return device.type == "cuda" and precision != "fp32"


@contextlib.contextmanager
def fast_matmul(device: torch.device, precision: str):
    """Let fp32 matrix products use TF32 for the duration where `uses_tf32` says so.

    Under bf16 autocast most products are bf16 already; this covers the ones autocast keeps in
    fp32. The previous setting is restored on exit, so code that runs after training (and the
    bench's fp32 reference) keeps full precision. CPUs ignore it.
    """
    previous = torch.get_float32_matmul_precision()
    if uses_tf32(device, precision):
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def to_device(batch: dict, device: torch.device) -> dict:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
