"""Continual methods by name. Adding a method: write its dataclass (one file, options declared with ``option``), and
add it to ``METHODS`` here; the CLI flags, config-file keys and run records follow from its declaration."""
from __future__ import annotations

import typing
from dataclasses import dataclass, field

from ...errors import ConfigError
from .agem import AGEM
from .er import ExperienceReplay
from .ewc import EWC
from .gem import GEM
from .ilora import ILoRA
from .l2p import L2P
from .mcsgd import MCSGD
from .merging import MagMax, TaskArithmetic, Ties
from .base import MethodBase
from .option import option_fields, option_type, takes_seed
from .mtl import CumulativeMultiTask, MultiTask
from .olora import OLoRA
from .one import PerTaskModels
from .pp import ProgressivePrompts
from .seq import Sequential
from .seq_path import PathPicked
from .sure import SuRe

METHODS: dict[str, type] = {cls.name: cls for cls in (Sequential, PathPicked, ExperienceReplay, EWC, MultiTask, CumulativeMultiTask,
                                                       PerTaskModels, AGEM, GEM, L2P, ProgressivePrompts, OLoRA, SuRe,
                                                       ILoRA, MCSGD, TaskArithmetic, Ties, MagMax)}


def get_method(name: str, seed: int | None = None, **options) -> MethodBase:
    """Build a method; an option it does not declare is an error (so a typo in a flag cannot pass silently).

    ``seed`` goes to the methods that draw random numbers of their own (the replay buffers of er and ilora) and is
    not an option of the others, so a caller passes the run's seed whichever method it builds.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {sorted(METHODS)}")
    cls = METHODS[name]
    declared = {f.name for f in option_fields(cls)}
    unknown = sorted(set(options) - declared)
    if unknown:
        from ..old_names import OLD_FIELDS

        renamed = OLD_FIELDS.get(name, {}).get(unknown[0])
        has = f"it is now {renamed!r}" if renamed else f"its options are {sorted(declared)}" if declared else "it has no options"
        raise ConfigError(f"method '{name}' has no option {unknown[0]!r}; {has}")
    if seed is not None and takes_seed(cls):
        options["seed"] = seed
    return cls(**options)


@dataclass
class DeclaredOption:
    """One method option as the CLI and config files see it: the union of its declarations over the methods."""

    name: str  # the methods' field name (their constructor argument)
    flag: str  # the `modeconn train` flag, without dashes
    type: type
    help: str
    choices: tuple | None
    defaults: dict[str, object] = field(default_factory=dict)  # method name -> its default

    @property
    def key(self) -> str:
        """The config-file key."""
        return self.flag.replace("-", "_")


def declared_options() -> dict[str, DeclaredOption]:
    """Every method's options by config key, in declaration order (options shared by several methods appear once)."""
    out: dict[str, DeclaredOption] = {}
    for method, cls in METHODS.items():
        hints = typing.get_type_hints(cls)
        for f in option_fields(cls):
            key, flag = f.name, f.name.replace("_", "-")
            if key not in out:
                out[key] = DeclaredOption(f.name, flag, option_type(hints[f.name]), f.metadata["help"],
                                          choices=f.metadata["choices"])
            out[key].defaults[method] = f.default
    return out
