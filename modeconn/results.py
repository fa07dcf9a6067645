"""One JSON round trip for every result: ``{"kind": …, **fields, **summary}`` out, the fields back in."""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import ClassVar

from .files import json_text


class JsonResult:
    """Mixin of a dataclass result: its ``kind`` (a class constant, or a field where one class has several kinds), the
    keys ``json_summary`` adds (recomputed, so dropped on reading), and ``from_fields`` to rebuild nested parts."""

    kind: ClassVar[str]
    json_derived: ClassVar[tuple[str, ...]] = ()

    def json_summary(self) -> dict:
        """Keys written beside (or over) the fields: numbers derived from them, nested parts in their own JSON."""
        return {}

    def to_json(self) -> dict:
        return {"kind": self.kind, **asdict(self), **self.json_summary()}

    def dumps(self) -> str:
        return json_text(self.to_json())

    @classmethod
    def from_json(cls, data: dict):
        keep_kind = "kind" in {f.name for f in fields(cls)}
        return cls.from_fields({k: v for k, v in data.items()
                                if k not in cls.json_derived and (keep_kind or k != "kind")})

    @classmethod
    def from_fields(cls, data: dict):
        """The result from its JSON fields (``kind`` and derived keys removed)."""
        return cls(**data)
