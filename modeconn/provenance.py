"""What made a result: its resolved settings, the library versions, and the command (or that a Python call made it).

The CLI names its command line with ``invoked_as(argv)`` around the call; a library call outside it is recorded as
``PYTHON_CALL`` instead of the ``sys.argv`` of whatever process hosts it (a notebook kernel, a test runner).
"""
from __future__ import annotations

import shlex
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import metadata
from typing import Iterator

PYTHON_CALL = "(a Python call; no command line)"
_COMMAND: ContextVar[str | None] = ContextVar("modeconn_command", default=None)
LIBRARIES = ("modeconn", "torch", "transformers", "peft")


@contextmanager
def invoked_as(argv: list[str]) -> Iterator[None]:
    """Record ``modeconn ARGV…`` as the command of every result made inside the block."""
    token = _COMMAND.set(shlex.join(["modeconn", *argv]))
    try:
        yield
    finally:
        _COMMAND.reset(token)


def command() -> str:
    return _COMMAND.get() or PYTHON_CALL


def versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def made_by(settings: dict) -> dict:
    """The record every result JSON carries under ``made_by``."""
    return {"settings": dict(settings), "versions": versions(), "command": command()}


def settings_line(record: dict | None, keys: tuple[str, ...] | None = None) -> str:
    """The settings as one short line for a figure's caption: ``space factor · points 11 · seed 0 · …``."""
    if not record:
        return ""
    settings = record.get("settings", {})
    chosen = keys or tuple(settings)
    parts = [f"{k.replace('_', ' ')} {settings[k]}" for k in chosen if k in settings and settings[k] is not None]
    version = record.get("versions", {}).get("modeconn")
    return " · ".join(parts + ([f"modeconn {version}"] if version else []))
