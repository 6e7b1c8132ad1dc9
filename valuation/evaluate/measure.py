"""Wall time and peak memory of one call.

Where it sits: the cost columns of every benchmark. Wall time is `time.perf_counter` around
the call, after blocking on JAX's asynchronous dispatch. Peak memory is the process's peak
resident set size during the call: on Linux the kernel's high-water mark (VmHWM) is reset
before the call by writing 5 to /proc/self/clear_refs, so the reading covers this call only;
elsewhere it falls back to the lifetime peak from `resource.getrusage` (an upper bound).
JAX's CPU buffers live in the resident set, so this counts them, which `tracemalloc` would not.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["Measurement", "measure"]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Cost of one call: `seconds` of wall time, `peak_mb` peak resident memory (MiB)."""

    seconds: float
    peak_mb: float


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux: _peak_mb falls back to the lifetime peak


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def measure(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Measurement]:
    """Call `fn(*args, **kwargs)`; return its output and what the call cost."""
    _reset_peak()
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    seconds = time.perf_counter() - start
    return out, Measurement(seconds=seconds, peak_mb=_peak_mb())
