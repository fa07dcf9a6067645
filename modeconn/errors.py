"""Errors a user can cause. The CLI prints their message as one line and exits with code 2."""


class ModeconnError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class CheckpointError(ModeconnError):
    """An adapter folder, manifest or hub id cannot be loaded."""


class CompatibilityError(ModeconnError):
    """Two adapters cannot share a path (different base model, modules, shapes or ranks)."""


class DataError(ModeconnError):
    """A task data file is missing, empty or malformed."""


class ConfigError(ModeconnError):
    """An option has a value that cannot work."""


class OutputError(ModeconnError):
    """The output folder cannot be used: a file, not writable, holding files modeconn did not write, or in use."""


class NonFiniteError(ModeconnError):
    """Training or curve fitting met a non-finite loss or gradient; nothing from that step was saved."""


class StateError(ModeconnError):
    """A run's resumable state is unreadable (truncated or edited)."""


class Interrupted(ModeconnError):
    """The user stopped the command (Ctrl-C); the CLI exits with code 130."""
