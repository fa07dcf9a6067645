"""Method options declared as dataclass fields: default, help, flag and allowed values in one place.

The CLI flags, config-file keys, checks and run records all derive from these declarations (``registry.py``).
"""
from __future__ import annotations

import typing
from dataclasses import field, fields
from typing import Any


def option(default: Any, help: str, *, choices: tuple | None = None, low: float | None = None,
           high: float | None = None, high_open: bool = False):
    """Declare a method option as a dataclass field: its default, its help and its allowed values (``choices``, or a
    number within ``low`` … ``high``). Its ``modeconn train`` flag is the field name with dashes, so an option of one
    method is named ``<method>_<option>``. The CLI, config files, the checks and the run record all derive from it."""
    return field(default=default, metadata={"option": True, "help": help, "choices": choices,
                                            "low": low, "high": high, "high_open": high_open})


def run_seed():
    """The field that receives the run's seed (``get_method(..., seed=)``): for methods that draw random numbers.
    Its default is TrainConfig's, so a method built without a seed draws as a run with the default seed would."""
    from ..config import TrainConfig

    default = next(f.default for f in fields(TrainConfig) if f.name == "seed")
    return field(default=default, metadata={"run_seed": True})


def option_fields(method_class: type) -> list:
    return [f for f in fields(method_class) if f.metadata.get("option")]


def option_type(hint) -> type:
    """``int`` for ``int`` and ``int | None``; the same for the other option types."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def takes_seed(method_class: type) -> bool:
    return any(f.metadata.get("run_seed") for f in fields(method_class))
