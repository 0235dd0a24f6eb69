"""Repeated timings summarised as median and spread, and the device sync that makes them true.

Every figure the bench quotes is a median over `repeats` samples, printed with its min and max:
on a shared machine the spread says how far to trust the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"median": self.median, "min": self.low, "max": self.high, "samples": list(self.samples)}

    def scaled(self, factor: float) -> "Spread":
        return spread([s * factor for s in self.samples])


def spread(samples: Sequence[float]) -> Spread:
    if not samples:
        raise ValueError("no samples to summarise")
    values = tuple(float(s) for s in samples)
    return Spread(statistics.median(values), min(values), max(values), values)


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a wall-clock reading covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate_samples(run_once: Callable[[], float], device: torch.device, repeats: int,
                 min_seconds: float = 0.2, warmup: int = 2) -> Spread:
    """Work per second over `repeats` samples; `run_once()` does one unit and returns its work.

    Each sample repeats the unit until at least `min_seconds` pass, so short units are not
    dominated by timer and launch noise.
    """
    for _ in range(warmup):
        run_once()
    sync(device)
    samples = []
    for _ in range(max(1, repeats)):
        work, start = 0.0, time.perf_counter()
        while True:
            work += run_once()
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        samples.append(work / elapsed)
    return spread(samples)
