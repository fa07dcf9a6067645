"""Continual methods by name. Adding a method: write its class (one file), add it here."""
from __future__ import annotations

import inspect

from ..errors import ConfigError
from .er import ExperienceReplay
from .ewc import EWC
from .ilora import ILoRA
from .methods import Method, Sequential
from .mtl import MultiTask

METHODS: dict[str, type] = {cls.name: cls for cls in (Sequential, ExperienceReplay, EWC, MultiTask, ILoRA)}


def get_method(name: str, seed: int | None = None, **options) -> Method:
    """Build a method; options it does not take are an error (so a typo in a flag cannot pass silently).

    ``seed`` goes to the methods that draw random numbers of their own (the replay buffers of er and ilora) and is
    not an option of the others, so a caller passes the run's seed whichever method it builds.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {sorted(METHODS)}")
    if seed is not None and "seed" in inspect.signature(METHODS[name]).parameters:
        options["seed"] = seed
    try:
        method = METHODS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"method '{name}': {exc}") from None
    method.options = dict(options)  # recorded with the run, and checked when it is resumed
    return method
