"""The one way modeconn writes files: under a temporary name in the same folder, flushed to disk, then renamed.

A reader (or a run killed half-way) sees the old file or the new one, never half of one. ``write_all`` does the
same for a result's files together (JSON + PNG + HTML), ``atomic_folder`` for a folder built whole (an adapter).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

Content = Union[str, bytes, Callable[[Path], None]]
TEMP_PREFIX = ".modeconn-"


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fill(path: Path, content: Content) -> None:
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    _fsync(path)


def atomic_write(path: str | Path, content: Content) -> Path:
    """Write ``content`` (text, bytes, or a ``writer(tmp_path)``) to ``path`` all-or-nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        _fill(tmp, content)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, data) -> Path:
    """JSON with a trailing newline; NaN and infinity are refused (they are not JSON)."""
    return atomic_write(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def null_nonfinite(data):
    """``data`` with every NaN or infinite float replaced by None: results keep them, their JSON writes null."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: null_nonfinite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [null_nonfinite(v) for v in data]
    return data


def count_nonfinite(data) -> int:
    """How many NaN or infinite floats ``data`` holds (nested lists and dicts)."""
    if isinstance(data, float):
        return 0 if math.isfinite(data) else 1
    if isinstance(data, dict):
        return sum(count_nonfinite(v) for v in data.values())
    if isinstance(data, (list, tuple)):
        return sum(count_nonfinite(v) for v in data)
    return 0


def nan_for_null(values: list | None) -> list | None:
    """A list of numbers read back from JSON: null (a non-finite value when written) becomes NaN again."""
    if values is None:
        return None
    return [nan_for_null(v) if isinstance(v, list) else (math.nan if v is None else v) for v in values]


def json_text(data) -> str:
    """A result as JSON text: indented, non-finite numbers as null."""
    return json.dumps(null_nonfinite(data), indent=2, allow_nan=False)


def write_all(out: str | Path, writers: dict[str, Content]) -> list[Path]:
    """Write several files of one folder together: all are finished in a temporary folder before any is moved in."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out))
    try:
        for name, content in writers.items():
            _fill(tmp / name, content)
        final = []
        for name in writers:
            os.replace(tmp / name, out / name)
            final.append(out / name)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; when the block ends without error, it replaces ``folder``
    (an old one is moved aside first and removed after), otherwise it is removed and ``folder`` is left as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{folder.name}.", dir=folder.parent))
    tmp.chmod(0o755)
    old = None
    try:
        yield tmp
        for item in tmp.rglob("*"):
            if item.is_file():
                _fsync(item)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}old.", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def content_hash(paths) -> str:
    """sha256 over every file under ``paths`` (relative name and content), in a fixed order: the key of a result
    read back, so a changed input is measured again."""
    digest = hashlib.sha256()
    for given in paths:
        root = Path(given)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root] if root.is_file() else []
        for path in files:
            digest.update(f"{path.relative_to(root) if root.is_dir() else root.name}\0".encode())
            with open(path, "rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def as_json(data):
    """``data`` as it reads back from a JSON file (tuples as lists, paths and other objects as text): how a key made
    now is compared with one written before."""
    return json.loads(json.dumps(data, default=str))


def keep(path: str | Path, key: dict, value) -> Path:
    """Write one finished piece of a long computation (a sweep's pair, a curvature point) with the key it was made
    under, so a stopped run resumes after it (``kept``)."""
    return write_json(path, {"key": as_json(key), "value": value})


def kept(path: str | Path, key: dict):
    """The value ``keep`` wrote to ``path`` under the same key, or None: absent, unreadable (a write cut short by a full
    disk) or made from other inputs or settings, so it is computed again."""
    from .checks import load_json_text

    try:
        found = load_json_text(Path(path).read_text()) if Path(path).is_file() else None
    except (ValueError, OSError):
        return None
    if not isinstance(found, dict) or found.get("key") != as_json(key) or "value" not in found:
        return None
    return found["value"]
