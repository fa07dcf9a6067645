"""What every analysis scores and how, built once at the door: the tasks, the base model and the evaluator's settings.

The CLI generates its shared analysis options from these fields (``help`` and, for the command line, ``flag``,
``choices``, ``low``, ``multiple``), and every result records ``asdict`` of them, resolved, in its ``made_by``.

    settings = StudySettings(data=("news=checkpoints/data/news",), limit=24, dtype="bfloat16")
    result = measure_barrier(["runs/seq/news", "runs/seq/gloss"], settings, space="delta")
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import checks
from ..errors import ConfigError
from ..evaluator.data import SPLITS
from ..evaluator.fields import DTYPE_CHOICES, dtype_field, max_batch_tokens_field, max_length_field

ACCURACY = {"barrier": True, "plane": False, "landscape": False, "sweep": False}  # each analysis's own default
DATA_HELP = ("a data file (.json list of records or columns, .jsonl, .json.gz, .jsonl.gz, .parquet, .csv, .tsv, .arrow, a "
             "save_to_disk Dataset) or a task folder (train/eval/test files, or a save_to_disk DatasetDict); repeatable; "
             "adds to the tasks named in sequence.json")


@dataclass(frozen=True)
class StudySettings:
    data: tuple = field(default=(), metadata={
        "help": DATA_HELP, "multiple": True, "metavar": "[NAME=]PATH"})
    prompt_field: str | None = field(default=None, metadata={
        "help": "the --data records' field holding the prompt [prompt; else input, instruction or question, with their "
                "answer field]"})
    answer_field: str | None = field(default=None, metadata={
        "help": "the --data records' field holding the answer; numbers and booleans are read in JSON's spelling (3, 2.5, "
                "true) [answer; else output, response or answer]"})
    manifest: bool = field(default=True, metadata={
        "help": "use only the --data tasks, not the adapters' own tasks", "flag": "--no-manifest-data"})
    split: str = field(default="eval", metadata={"help": "the split every task is scored on", "choices": SPLITS})
    base: str | None = field(default=None, metadata={
        "help": "base model: a folder, a hub id, 'tiny-llama' or 'smollm2-135m' (default: from the checkpoints)"})
    limit: int | None = field(default=None, metadata={"help": "use at most this many examples per task", "low": 1})
    seed: int = field(default=0, metadata={"help": "the seed of everything drawn at random (landscape directions, "
                                                   "curve fitting)"})
    device: str = field(default="cpu", metadata={
        "help": "cpu, cuda or cuda:N (under accelerate launch, cuda means each process's own GPU)"})
    device_map: str | None = field(default=None, metadata={
        "help": "auto: spread a base too large for one GPU over all visible GPUs (accelerate's big-model loading)",
        "choices": ("auto",)})
    max_length: int | None = max_length_field()
    max_batch_tokens: int | None = max_batch_tokens_field()
    dtype: str = dtype_field()
    allow_pickle: bool = field(default=False, metadata={
        "help": "allow adapter_model.bin (loaded with torch.load(weights_only=True))"})
    accuracy: bool | None = field(default=None, metadata={
        "help": "also decode greedily at every point and score each task's metric (slow) [None: the analysis's own "
                "default, ACCURACY]"})
    progress: bool = field(default=True, metadata={"help": "show progress bars", "flag": None})

    def __post_init__(self):
        if isinstance(self.data, (str, Path)):
            raise ConfigError(f"data must be a list of [NAME=]PATH, got the single {type(self.data).__name__} "
                              f"{str(self.data)!r}; wrap it in a list")
        if not isinstance(self.data, (list, tuple)):
            raise ConfigError(f"data must be a list of [NAME=]PATH, got {checks.short(self.data)}")
        object.__setattr__(self, "data", tuple(self.data))
        checks.text("prompt_field", self.prompt_field, optional=True)
        checks.text("answer_field", self.answer_field, optional=True)
        if (self.prompt_field or self.answer_field) and not self.data:
            raise ConfigError("--prompt-field/--answer-field name the fields of the --data tasks, and none was given; "
                              "pass --data (a sequence.json names its tasks' fields as prompt_field/answer_field)")
        checks.flag("manifest", self.manifest)
        checks.choice("split", self.split, SPLITS)
        checks.text("base", self.base, optional=True)
        checks.optional_count("limit", self.limit)
        checks.seed("seed", self.seed)
        checks.device("device", self.device)
        if self.device_map is not None:
            checks.choice("device_map", self.device_map, ("auto",))
        checks.optional_count("max_length", self.max_length, 2)
        checks.optional_count("max_batch_tokens", self.max_batch_tokens)
        checks.choice("dtype", self.dtype, DTYPE_CHOICES)
        checks.flag("allow_pickle", self.allow_pickle)
        if self.accuracy is not None:
            checks.flag("accuracy", self.accuracy)
        checks.flag("progress", self.progress)

    def with_accuracy(self, default: bool) -> "StudySettings":
        """These settings with ``accuracy`` set: as given, else the analysis's own ``default``."""
        return self if self.accuracy is not None else replace(self, accuracy=default)

    def eval_config(self):
        """The evaluator's ``EvalConfig`` these settings ask for (accuracy on where no analysis has set it)."""
        from ..evaluator.evaluate import EvalConfig

        return EvalConfig(max_batch_tokens=self.max_batch_tokens, max_length=self.max_length,
                          accuracy=self.accuracy is not False, progress=self.progress, dtype=self.dtype)

    def record(self) -> dict:
        """``asdict`` for a result's ``made_by``: the data as text; the data, field, manifest, pickle and device-map
        settings only where given (results made with the defaults read as before), progress bars never."""
        defaults, record = StudySettings(), asdict(self)
        record["data"] = [data_text(spec) for spec in self.data]
        for key in ("data", "prompt_field", "answer_field", "manifest", "allow_pickle", "device_map", "progress"):
            if key == "progress" or getattr(self, key) == getattr(defaults, key):
                del record[key]
        return record


def data_text(spec) -> str:
    """A ``--data`` entry as the JSON record shows it: ``NAME=PATH`` for a TaskSource, else as given."""
    name, path = getattr(spec, "name", None), getattr(spec, "path", None)
    return f"{name}={path}" if name is not None and path is not None else str(spec)
