"""The task-sequence manifest ``sequence.json``: base model, task order, data folders, per-task adapters."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import checks
from ..errors import CheckpointError, ConfigError

MANIFEST = "sequence.json"


@dataclass(frozen=True)
class TaskEntry:
    name: str  # also a folder name in run folders: one safe path component
    data: str  # task folder holding train/eval/test, relative to the manifest's folder or absolute
    adapter: str  # adapter folder, relative to the manifest's folder or absolute
    metric: str = "exact_match"
    prompt_field: str | None = None  # the data's field names of the prompt and the answer (None: recognised)
    answer_field: str | None = None

    def __post_init__(self):
        checks.safe_name("task name", self.name)
        for key in ("data", "adapter", "metric"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"task {self.name!r}: {key} must be a non-empty string, got {getattr(self, key)!r}")
        for key in ("prompt_field", "answer_field"):
            if getattr(self, key) is not None and (not isinstance(getattr(self, key), str) or not getattr(self, key)):
                raise ConfigError(f"task {self.name!r}: {key} must be a field name, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class Sequence:
    name: str
    base_model: str
    tasks: tuple[TaskEntry, ...]
    method: str = "seq"
    extra: dict = field(default_factory=dict)
    root: Path = Path(".")

    def __post_init__(self):
        checks.unique("task", [t.name for t in self.tasks])

    def data_dir(self, task: TaskEntry) -> Path:
        return _resolved(self.root / task.data)

    def adapter_dir(self, task: TaskEntry) -> Path:
        return _resolved(self.root / task.adapter)

    def task(self, name: str) -> TaskEntry:
        for t in self.tasks:
            if t.name == name:
                return t
        raise CheckpointError(f"task '{name}' is not in {self.root / MANIFEST}; it has {[t.name for t in self.tasks]}")

    def task_for_adapter(self, adapter_dir: str | Path) -> TaskEntry | None:
        target = Path(adapter_dir).resolve()
        return next((t for t in self.tasks if self.adapter_dir(t) == target), None)

    def to_json(self) -> dict:
        return {"name": self.name, "base_model": self.base_model, "method": self.method,
                "tasks": [{k: v for k, v in asdict(t).items() if v is not None} for t in self.tasks],  # unnamed fields: left out
                **({"extra": self.extra} if self.extra else {})}

    def save(self, folder: str | Path) -> Path:
        from ..files import write_json

        return write_json(Path(folder) / MANIFEST, self.to_json())


def load_sequence(path: str | Path) -> Sequence:
    """Read a manifest (the file, or the folder that holds it)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: no sequence manifest found")
    try:
        raw = checks.load_json_text(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list):
            raise TypeError('expected {"name", "base_model", "tasks": [...]}')
        tasks = tuple(TaskEntry(**t) for t in raw["tasks"])
        if not isinstance(raw["base_model"], str):
            raise TypeError(f"base_model must be a string, got {raw['base_model']!r}")
        return Sequence(str(raw["name"]), raw["base_model"], tasks, raw.get("method", "seq"), extra=raw.get("extra", {}), root=path.parent)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(f"{path}: malformed sequence manifest ({type(exc).__name__}: {exc})") from None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise CheckpointError(f"{path}: cannot be resolved ({exc})") from None

