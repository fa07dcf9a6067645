"""Checks of single values, shared by the dataclass configs (Python callers) and the CLI's option types, so a bad
value gets the same one-line message by either road. Each names the setting it checks."""
from __future__ import annotations

import math
import os
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


def flag(name: str, value) -> bool:
    """A true/false setting: a truthy string such as "no" is refused, not read as True."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


def text(name: str, value, optional: bool = False):
    """A non-empty string (a path, a hub id, a name); None too when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a {'path or name' if optional else 'non-empty string'}"
                          f"{' or None' if optional else ''}, got {value!r}")
    return value


def texts(name: str, value, low: int = 0) -> list[str]:
    """A list of paths or names; one string alone is refused (iterating it would give its characters)."""
    if isinstance(value, (str, bytes, os.PathLike)):
        raise ConfigError(f"{name} must be a list of paths or names, got the single {type(value).__name__} {value!r}; "
                          f"pass [{value!r}]")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list of paths or names, got {value!r}")
    items = [text(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if len(items) < low:
        raise ConfigError(f"{name} must list at least {low} item{'s' if low > 1 else ''}, got {len(items)}")
    return items


def instance(name: str, value, kind, what: str):
    """An object of ``kind`` (``what`` names it for the message): a wrong type fails here, not deep in torch."""
    if not isinstance(value, kind):
        raise ConfigError(f"{name} must be {what}, got {type(value).__name__} {short(value)}")
    return value


def short(value) -> str:
    """A value's repr, cut to fit in a one-line message."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


JSON_DEPTH = 100  # modeconn's own files nest at most ~10 levels; deeper is not a file of ours, and would exhaust the stack


class JSONShapeError(ValueError):
    """Valid JSON that modeconn will not read: nested too deeply, or a key given twice."""


def _unique_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise JSONShapeError(f"key {key!r} appears twice (one value would silently replace the other)")
        seen[key] = value
    return seen


def load_json_text(text: str):
    """``json.loads`` that never raises RecursionError and refuses duplicate keys: a ValueError for either, so every
    reader's handler for bad JSON gives its one line."""
    import json

    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise JSONShapeError(f"nested more than {JSON_DEPTH} levels deep") from None
    stack = [(data, 1)]
    while stack:  # iterative: a depth check that recursed would fail on the very input it is for
        value, depth = stack.pop()
        if depth > JSON_DEPTH:
            raise JSONShapeError(f"nested more than {JSON_DEPTH} levels deep")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return data


def free_space(folder, need: int, what: str) -> None:
    """Refuse, before any work, a plan whose files would not fit on the disk that holds ``folder``."""
    import shutil
    from pathlib import Path

    where = Path(folder).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        have = shutil.disk_usage(where).free
    except OSError:
        return
    if need > have:
        raise ConfigError(f"{what} needs about {_size(need)} on the disk of {folder}, which has {_size(have)} free; "
                          "free some space or choose another folder")


def _size(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"
