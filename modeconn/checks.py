"""Checks of single values, shared by the dataclass configs (Python callers) and the CLI's option types, so a bad
value gets the same one-line message by either road. Each names the setting it checks."""
from __future__ import annotations

import math
import re

from .errors import ConfigError

SEED_LIMIT = 2**32  # seeds are 0 … 2³²−1: what every generator modeconn feeds (torch, random, numpy) accepts
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def finite(name: str, value, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> float:
    """A real number, not NaN or infinite, within the bounds given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(f"{name} must be {'above' if low_open else 'at least'} {low:g}, got {value:g}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(f"{name} must be {'below' if high_open else 'at most'} {high:g}, got {value:g}")
    return float(value)


def count(name: str, value, low: int = 1, high: int | None = None) -> int:
    """A whole number within the bounds given (1.5 epochs or True examples are refused, not rounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be at most {high}, got {value}")
    return value


def optional_count(name: str, value, low: int = 1, high: int | None = None) -> int | None:
    return None if value is None else count(name, value, low, high)


def seed(name: str, value) -> int:
    return count(name, value, 0, SEED_LIMIT - 1)


def choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def safe_name(what: str, value) -> str:
    """A task name used as a folder name: one path component of letters, digits and . _ + - (no '..', no '/')."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or value in (".", ".."):
        raise ConfigError(f"{what} {value!r} cannot be a folder name: use letters, digits and . _ + - only, "
                          "starting with a letter or digit")
    return value


def unique(what: str, names) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{what} {name!r} is listed twice")
        seen.add(name)


def device(name: str, value: str) -> str:
    """A device torch knows and this machine has: cpu, cuda, cuda:N (N below the GPU count), mps."""
    import torch

    try:
        parsed = torch.device(value)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{name} {value!r} is not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{name} {value!r}: this machine has no CUDA device; use cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"{name} {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"numbered 0 to {torch.cuda.device_count() - 1}")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{name} {value!r}: MPS is not available here; use cpu")
    elif parsed.type != "cpu":
        raise ConfigError(f"{name} {value!r}: modeconn runs on cpu, cuda or mps")
    return value


def available_memory() -> int:
    """Bytes of memory this process could still use (MemAvailable; the physical total where that is unknown)."""
    import os

    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# what one evaluated point costs in host memory before any model runs: its coefficients (float64 and float32
# copies per anchor), its t or grid coordinates as Python floats, and each task's loss and accuracy as Python floats
BYTES_PER_POINT = 256


def points_fit(what: str, points: int, tasks: int = 1) -> None:
    """Refuse a point count whose bookkeeping alone would not fit in this machine's memory, saying the estimate."""
    need = points * BYTES_PER_POINT * max(1, tasks)
    have = available_memory()
    if need > have:
        raise ConfigError(f"{what}: {points:,} points would need about {need / 2**30:,.1f} GiB before any model runs; "
                          f"this machine has {have / 2**30:,.1f} GiB available")
