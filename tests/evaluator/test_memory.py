"""release_freed returns the heap's free pages to the system: on glibc, blocks freed below a live one stay resident
until malloc_trim; after it the process's resident memory is back near where it was."""
import ctypes
import os
import platform

import pytest
import torch

from modeconn.evaluator.memory import _malloc_trim, release_freed


def _resident_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="malloc_trim is glibc's")
def test_freed_tensors_below_a_live_one_are_returned():
    release_freed()
    before = _resident_mb()
    big = torch.ones(16 << 20, dtype=torch.uint8)
    del big  # glibc raises its mmap threshold to 16 MB: the 1 MB blocks below come from the heap
    blocks = [torch.ones(1 << 20, dtype=torch.uint8) for _ in range(200)]
    live = blocks[-1]  # the topmost block stays: the heap cannot shrink from its top
    del blocks
    held = _resident_mb()
    assert held - before > 150  # 199 freed megabytes still resident (what a sweep's passes leave, at scale)
    assert release_freed()
    assert _resident_mb() - before < 50
    assert live.sum() == 1 << 20


def test_without_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: (_ for _ in ()).throw(OSError("no such library")))
    _malloc_trim.cache_clear()
    try:
        assert _malloc_trim() is None and release_freed() is False
    finally:
        _malloc_trim.cache_clear()
