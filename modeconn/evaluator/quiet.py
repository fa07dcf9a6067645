"""Silence the Hugging Face libraries' own progress bars for one block, and put them back as they were after it.

Their bars (loading a two-file base, reading one small JSON file) would only clutter modeconn's output; the switches
are process-wide, so they are restored on the way out instead of being left off for the caller.
"""
from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from typing import Iterator


@contextmanager
def _toggled(is_enabled, disable, enable) -> Iterator[None]:
    was_enabled = is_enabled()
    if was_enabled:
        disable()
    try:
        yield
    finally:
        if was_enabled:
            enable()


_SWITCHES = {  # library -> module holding its progress-bar switches
    "transformers": "transformers.utils.logging",
    "datasets": "datasets.utils.logging",
}


@contextmanager
def quiet_progress(*libraries: str) -> Iterator[None]:
    """The named libraries' bars (default: transformers') off inside the block."""
    from importlib import import_module

    with ExitStack() as stack:
        for library in libraries or ("transformers",):
            switches = import_module(_SWITCHES[library])
            stack.enter_context(_toggled(switches.is_progress_bar_enabled, switches.disable_progress_bar,
                                         switches.enable_progress_bar))
        yield


@contextmanager
def quiet_logger(name: str, level: int = logging.CRITICAL) -> Iterator[None]:
    """Raise one library logger's level inside the block (its error log would repeat what modeconn raises)."""
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)
