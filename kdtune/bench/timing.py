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

    Each sample runs the unit `n` times back to back and syncs once, with `n` chosen so that a
    sample lasts about `min_seconds`: short units (a small GEMM on a GPU takes microseconds) are
    then timed without a device sync between them.
    """
    for _ in range(warmup):
        run_once()
    sync(device)
    n, elapsed = 1, 0.0
    while n < 2**20:  # calibrate: double n until a run lasts a tenth of min_seconds
        start = time.perf_counter()
        for _ in range(n):
            run_once()
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / 10:
            break
        n *= 2
    n = max(1, round(n * min_seconds / max(elapsed, 1e-9)))
    samples = []
    for _ in range(max(1, repeats)):
        work, start = 0.0, time.perf_counter()
        for _ in range(n):
            work += run_once()
        sync(device)
        samples.append(work / (time.perf_counter() - start))
    return spread(samples)


def ratio(a, b) -> dict:
    """a's examples/s over b's: median over median, and the extremes paired crosswise."""
    return {"median": a.examples_per_s.median / b.examples_per_s.median,
            "min": a.examples_per_s.low / b.examples_per_s.high,
            "max": a.examples_per_s.high / b.examples_per_s.low}
