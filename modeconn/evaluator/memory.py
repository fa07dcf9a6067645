"""Give host memory that PyTorch freed back to the system between passes.

On Linux with glibc, the CPU tensors a pass frees go back to malloc's heap, and once glibc has raised its mmap
threshold (it does after the first large free) tensors of up to 32 MB come from that heap too; pages freed below a
live allocation stay resident. Over a sweep's passes of varying shapes the heap grows to many times the live set: a
SmolLM2-135M `modeconn report` held 10.0 GB, 6.4 GB of it free heap pages (`malloc_trim(0)` from gdb brought it to
3.6 GB). ``release_freed`` calls glibc's ``malloc_trim(0)`` (it returns every free page of the heap, not only its top),
which no Python library wraps: ctypes, as dask.distributed's ``trim_memory`` does. Elsewhere it does nothing.
"""
from __future__ import annotations

import ctypes
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` of this process, or None (another C library: musl, macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed() -> bool:
    """Return the heap's free pages to the system; True where glibc released any. A few milliseconds: called once per
    evaluation, curve fit, curvature point and training task, not per batch."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
