"""The task-sequence manifest ``sequence.json``: base model, task order, data folders, per-task adapters."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CheckpointError

MANIFEST = "sequence.json"


@dataclass(frozen=True)
class TaskEntry:
    name: str
    data: str  # task folder holding train/eval/test, relative to the manifest's folder or absolute
    adapter: str  # adapter folder, relative to the manifest's folder or absolute
    metric: str = "exact_match"


@dataclass(frozen=True)
class Sequence:
    name: str
    base_model: str
    tasks: tuple[TaskEntry, ...]
    method: str = "seq"
    extra: dict = field(default_factory=dict)
    root: Path = Path(".")

    def data_dir(self, task: TaskEntry) -> Path:
        return (self.root / task.data).resolve()

    def adapter_dir(self, task: TaskEntry) -> Path:
        return (self.root / task.adapter).resolve()

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
                "tasks": [asdict(t) for t in self.tasks], **({"extra": self.extra} if self.extra else {})}

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
        raw = json.loads(path.read_text())
        tasks = tuple(TaskEntry(**t) for t in raw["tasks"])
        return Sequence(raw["name"], raw["base_model"], tasks, raw.get("method", "seq"), raw.get("extra", {}), path.parent)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: malformed sequence manifest ({exc})") from None


def find_sequence(adapter_dir: str | Path) -> Sequence | None:
    """The manifest of the folder that holds an adapter, if it lists that adapter."""
    manifest = Path(adapter_dir).resolve().parent / MANIFEST
    if manifest.is_file():
        seq = load_sequence(manifest)
        if seq.task_for_adapter(adapter_dir) is not None:
            return seq
    return None
