"""Continual methods by name. Adding a method: write its class (one file), add it here."""
from __future__ import annotations

from ..errors import ConfigError
from .er import ExperienceReplay
from .ewc import EWC
from .ilora import ILoRA
from .methods import Method, Sequential
from .mtl import MultiTask

METHODS: dict[str, type] = {cls.name: cls for cls in (Sequential, ExperienceReplay, EWC, MultiTask, ILoRA)}


def get_method(name: str, **options) -> Method:
    """Build a method; options it does not take are an error (so a typo in a flag cannot pass silently)."""
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {sorted(METHODS)}")
    try:
        method = METHODS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"method '{name}': {exc}") from None
    method.options = dict(options)  # recorded with the run, and checked when it is resumed
    return method
