"""Peak memory of a block of work (one trial: build + training).

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
  allocated before (tensors the block creates and frees count at their peak).
- CPU on Linux: the process's peak resident set (``VmHWM``) is reset by writing ``5`` to
  ``/proc/self/clear_refs``; the figure is peak RSS during the block minus RSS before it. Freed
  heap memory is first handed back to the system (glibc ``malloc_trim``), so that the block's
  allocations show up as new resident pages instead of silently reusing earlier ones.
- Elsewhere (no clear_refs): the growth of ``ru_maxrss``, a lower bound when the process had
  already peaked higher before the block (the result's ``kind`` says which was measured).
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Peak:
    kind: str = ""
    bytes: int = 0
    before: int = 0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bytes": self.bytes, "mib": self.bytes / 2**20}


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _trim_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _maxrss_bytes() -> int:
    # Linux reports KiB, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class peak_memory:
    """``with peak_memory(device) as peak: ...`` then read ``peak.bytes`` and ``peak.kind``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = Peak()

    def __enter__(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.peak.kind, self.peak.before = "cuda_max_allocated", torch.cuda.memory_allocated(self.device)
            return self.peak
        import gc

        gc.collect()
        _trim_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            rss = _status_kib("VmRSS")
            if rss is None:
                raise OSError("no VmRSS")
            self.peak.kind, self.peak.before = "peak_rss_delta", rss * 1024
        except OSError:
            self.peak.kind, self.peak.before = "maxrss_growth", _maxrss_bytes()
        return self.peak

    def __exit__(self, *exc) -> None:
        if self.peak.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            top = torch.cuda.max_memory_allocated(self.device)
        elif self.peak.kind == "peak_rss_delta":
            top = (_status_kib("VmHWM") or 0) * 1024
        else:
            top = _maxrss_bytes()
        self.peak.bytes = max(0, top - self.peak.before)
