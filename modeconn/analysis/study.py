"""What every analysis sets up once: the adapters (loaded and checked), the tasks to score them on (from the
sequence manifest beside them and from ``data``), the base model, and the settings every result records.

    study = Study.open(["runs/seq/news", "runs/seq/gloss"], StudySettings(limit=24), space="delta")
    curves = study.evaluate(linear_path(*study.adapters, "delta", True), coefficients)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .. import checks
from ..errors import CheckpointError, DataError
from ..evaluator.budget import auto_budget
from ..evaluator.data import Encoded, Example, Fields, encode_counted, read_data, resolve_max_length
from ..evaluator.evaluate import DTYPES, EvalConfig, TaskCurve, evaluate_points
from ..evaluator.precision import resolve_dtype
from ..evaluator.processes import Processes, processes
from ..evaluator.models import load_base
from ..evaluator.scoring import get_scorer
from ..lora.adapters import LoraWeights, check_compatible, load_adapter
from ..lora.sequence import MANIFEST, Sequence, load_sequence
from ..provenance import made_by
from .settings import StudySettings


@dataclass(frozen=True)
class TaskSource:
    """Where one task's examples come from: a task folder (any split) or a single data file."""

    name: str
    path: Path
    metric: str = "exact_match"
    fields: Fields = Fields()  # the record fields of its prompt and answer (None: recognised)

    def load(self, split: str, limit: int | None) -> list[Example]:
        return self.read(split, limit)[0]

    def read(self, split: str, limit: int | None) -> tuple[list[Example], Fields]:
        """The examples and the fields they were read from."""
        return read_data(self.path, split, limit, self.fields)


def parse_data_spec(spec: str, fields: Fields = Fields()) -> TaskSource:
    """``NAME=PATH`` or ``PATH``; the name defaults to the task folder's name (or the file's, or its folder's)."""
    from ..evaluator.formats import data_stem

    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: data file or task folder not found")
    if not name:
        stem = data_stem(p)
        name = p.name if p.is_dir() else (p.parent.name if stem in ("train", "eval", "test") else stem)
    return TaskSource(name, p, fields=fields)


def data_sources(specs, fields: Fields = Fields()) -> dict[str, TaskSource]:
    """The ``--data`` tasks (``[NAME=]PATH`` strings, or TaskSources) by name; two of one name are refused (one would
    silently replace the other)."""
    if isinstance(specs, (str, Path)):
        raise DataError(f"data must be a list of [NAME=]PATH, got the single {type(specs).__name__} {str(specs)!r}; "
                        "wrap it in a list")
    sources = {}
    for spec in specs:
        if not isinstance(spec, (str, Path, TaskSource)):
            raise DataError(f"data must be [NAME=]PATH strings, got {spec!r}")
        source = spec if isinstance(spec, TaskSource) else parse_data_spec(str(spec), fields)
        if source.name in sources:
            raise DataError(f"two --data tasks are named {source.name!r} ({sources[source.name].path} and "
                            f"{source.path}); give each its own name: --data NAME=PATH")
        sources[source.name] = source
    return sources


def sequence_sources(seq: Sequence) -> list[TaskSource]:
    """Every task of a manifest, its metric checked."""
    for entry in seq.tasks:
        get_scorer(entry.metric)
    return [entry_source(seq, entry) for entry in seq.tasks]


def entry_source(seq: Sequence, entry) -> TaskSource:
    """A manifest task's data, with the record fields its entry names."""
    return TaskSource(entry.name, seq.data_dir(entry), entry.metric, Fields(entry.prompt_field, entry.answer_field))


def load_task_data(specs: list[str], split: str = "eval", limit: int | None = None,
                   fields: Fields = Fields()) -> dict[str, list[Example]]:
    """Examples of ``split`` for each ``[NAME=]PATH`` (a task folder or a data file)."""
    return {name: source.load(split, limit) for name, source in data_sources(specs, fields).items()}


@dataclass
class Study:
    """Adapters, tasks and a base model, set up once; ``evaluate`` scores points of a span of the adapters."""

    locations: list[str]
    adapters: list[LoraWeights]
    space: str
    sources: dict[str, TaskSource]
    base_name: str
    model: object
    tokenizer: object
    settings: StudySettings = StudySettings()  # as resolved: dtype, max_length and the token budget as used
    processes: Processes = Processes()
    _loaded: dict = field(default_factory=dict, repr=False)
    _encoded: dict = field(default_factory=dict, repr=False)  # split → task → (encoded, prompts cut): encoded once
    _fields: dict = field(default_factory=dict, repr=False)  # task → the record fields its prompt and answer came from

    @classmethod
    def open(cls, locations: list[str], settings: StudySettings = StudySettings(), *, space: str = "factor",
             manifest_from: list[str] | None = None, sequence: Sequence | None = None) -> "Study":
        """Load and check the adapters at ``locations`` (for one span in ``space``), gather the tasks — those of the
        manifest beside the adapters in ``manifest_from`` (default: all; or of ``sequence``), plus the settings'
        ``data`` — load the settings' split of each, then load the base model (the settings' ``base``, else the
        manifest's, else the adapters') in the settings' dtype, on their device (or spread by ``device_map="auto"``).
        Under ``accelerate launch`` the points of each evaluation are shared among the processes. ``data``:
        ``[NAME=]PATH`` strings, or ``TaskSource``s that name their records' fields
        (``TaskSource("x", Path("x.csv"), fields=Fields("text", "label"))``)."""
        locations = checks.texts("locations", locations, low=1)  # Study.open([]) or one string: refused here
        checks.instance("settings", settings, StudySettings, "a StudySettings (e.g. StudySettings(limit=24))")
        if sequence is not None:
            checks.instance("sequence", sequence, Sequence, "a Sequence (modeconn.load_sequence(path))")
        checks.choice("space", space, ("factor", "delta"))
        group, device = processes(settings.device)
        locations = [str(p) for p in locations]
        adapters = [load_adapter(p, settings.allow_pickle) for p in locations]
        check_compatible(adapters, space, base_given=bool(settings.base))
        if sequence is not None:
            manifests, sources = [sequence], {s.name: s for s in sequence_sources(sequence)}
        else:
            manifests, sources = _manifest_sources(manifest_from or locations)
        if not settings.manifest:
            sources = {}
        sources.update(data_sources(settings.data, Fields(settings.prompt_field, settings.answer_field)))
        if not sources:
            what, hint = ("training", "TASK_FOLDER") if settings.split == "train" else ("evaluation", "FILE_OR_TASK_FOLDER")
            raise DataError(f"no {what} data: the adapters have no sequence.json beside them; pass data={hint}")
        study = cls(locations, adapters, space, sources, base_name="", model=None, tokenizer=None,
                    settings=replace(settings, device=device), processes=group)
        study.tasks()  # read every task before the (slower) base model, so bad data fails fast
        study.base_name = settings.base or next((s.base_model for s in manifests), None) or adapters[0].base_model or ""
        if not study.base_name:
            raise CheckpointError("the adapter does not name its base model; pass base=NAME")
        dtype = resolve_dtype(settings.dtype, "cuda" if settings.device_map else device)
        study.model, study.tokenizer = load_base(study.base_name, device=device, dtype=DTYPES[dtype],
                                                 allow_pickle=settings.allow_pickle, device_map=settings.device_map)
        study.settings = replace(study.settings, dtype=dtype,
                                 max_batch_tokens=settings.max_batch_tokens or auto_budget(study.model),
                                 max_length=resolve_max_length(study.model, settings.max_length),
                                 progress=settings.progress and group.main)
        study.encoded()  # an answer longer than max_length is refused before any work
        return study

    @property
    def eval_config(self) -> EvalConfig:
        return self.settings.eval_config()

    @property
    def split(self) -> str:
        return self.settings.split

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def metrics(self) -> dict[str, str]:
        return {name: source.metric for name, source in self.sources.items()}

    def tasks(self, split: str | None = None) -> dict[str, list[Example]]:
        """Every task's examples of ``split`` (default: the study's), read once."""
        split = split or self.split
        if split not in self._loaded:
            read = {name: source.read(split, self.settings.limit) for name, source in self.sources.items()}
            self._fields.update({name: used for name, (_, used) in read.items()})
            self._loaded[split] = {name: examples for name, (examples, _) in read.items()}
        return self._loaded[split]

    def encoded(self, split: str | None = None) -> dict[str, tuple[list[Encoded], int]]:
        """Every task's examples of ``split`` tokenized at the study's max_length, with the prompts cut: once."""
        split = split or self.split
        if split not in self._encoded:
            self._encoded[split] = {name: encode_counted(self.tokenizer, examples, self.settings.max_length)
                                    for name, examples in self.tasks(split).items()}
        return self._encoded[split]

    def evaluate(self, span, coefficients, config: EvalConfig | None = None, split: str | None = None,
                 shared: bool = True) -> dict[str, TaskCurve]:
        """Loss (and accuracy, if the config asks) of each point ``Σ_i coefficients[k, i]·θ_i`` on every task; with
        several processes each scores its share of the points (``shared=False``: all, for work shared otherwise)."""
        config = config or self.eval_config
        coefficients = torch.as_tensor(coefficients)
        tasks = self.tasks(split)
        encoded = self.encoded(split) if config.max_length == self.settings.max_length else None
        if not shared or self.processes.world == 1:
            return evaluate_points(self.model, self.tokenizer, span, coefficients, tasks=tasks, config=config,
                                   metrics=self.metrics, encoded=encoded)
        mine = self.processes.share(len(coefficients))
        curves = (evaluate_points(self.model, self.tokenizer, span, coefficients[mine], tasks=tasks, config=config,
                                  metrics=self.metrics, encoded=encoded) if mine else {})
        points = self.processes.gather([{n: (c.loss[i], c.accuracy[i] if c.accuracy else None,
                                             c.rank_accuracy[i] if c.rank_accuracy else None) for n, c in curves.items()}
                                        for i in range(len(mine))])
        about = self.processes.gather([{n: (c.examples, c.metric, c.cut_prompts) for n, c in curves.items()}] if curves else [])
        return _assemble(points, about[0])

    def record(self, **extra) -> dict:
        """The resolved settings of an analysis on this study, for its result's ``made_by``."""
        return {"space": self.space, **self.settings.record(), "processes": self.processes.world,
                "base": self.base_name, **self.data_fields(), **extra}

    def data_fields(self) -> dict:
        """``{"data_fields": {task: {"prompt": ..., "answer": ...}}}`` where a task's data used other names than
        prompt/answer (recognised or named); else nothing, so results on modeconn's own format read as before."""
        other = {name: used.to_json() for name, used in self._fields.items() if not used.default}
        return {"data_fields": other} if other else {}

    def made_by(self, **extra) -> dict:
        return made_by(self.record(**extra))


def _assemble(points: list[dict], about: dict) -> dict[str, TaskCurve]:
    """Per-point numbers gathered from the processes (in point order) back into one TaskCurve per task."""
    out = {}
    for name, (examples, metric, cut) in about.items():
        losses = [p[name][0] for p in points]
        accuracy, rank = [p[name][1] for p in points], [p[name][2] for p in points]
        out[name] = TaskCurve(losses, None if accuracy[0] is None else accuracy, examples, metric, cut_prompts=cut,
                              rank_accuracy=None if rank[0] is None else rank)
    return out


def _manifest_sources(adapter_dirs: list[str]) -> tuple[list[Sequence], dict[str, TaskSource]]:
    """Each adapter's own task, as the manifest beside it records it (adapters without one add none); every
    manifest is read once."""
    manifests: dict[Path, Sequence | None] = {}
    used: list[Sequence] = []
    sources = {}
    for adapter in adapter_dirs:
        if not Path(adapter).is_dir():
            continue
        where = Path(adapter).resolve().parent / MANIFEST
        if where not in manifests:
            manifests[where] = load_sequence(where) if where.is_file() else None
        seq = manifests[where]
        entry = seq.task_for_adapter(adapter) if seq is not None else None
        if entry is not None:
            get_scorer(entry.metric)
            sources[entry.name] = entry_source(seq, entry)
            used += [seq] if seq not in used else []
    return used, sources
