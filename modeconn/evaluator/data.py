"""Task data: a task folder ``<task>/{train,eval,test}.<format>`` (the TRACE / LLMCL layout, any format ``formats``
reads), an O-LoRA CL_Benchmark task folder (``standard_cl``), a saved DatasetDict, or one data file; the prompt and
answer of each record (``prompt``/``answer``, a recognised pair such as ``input``/``output``, or fields the user
names); and its tokenisation as ``bos + prompt + answer + eos``."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError
from .formats import DICT_SPLITS, SAVED, SUFFIXES, dict_split, read_columns, saved_kind

SPLITS = ("train", "eval", "test")
PAIRS = (("prompt", "answer"), ("input", "output"), ("instruction", "response"), ("question", "answer"))
FIELDS_HINT = "name them with --prompt-field/--answer-field (prompt_field/answer_field in Python and sequence.json)"


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    choices: tuple[str, ...] | None = None  # the task's answer space, where it has a fixed one (rank classification)


@dataclass(frozen=True)
class Fields:
    """Which fields of a record hold its prompt and its answer; None: recognised from the record's fields."""

    prompt: str | None = None
    answer: str | None = None

    def __post_init__(self):
        for key in ("prompt", "answer"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{key}_field must be a field name, got {value!r}")

    @property
    def default(self) -> bool:
        return (self.prompt, self.answer) == PAIRS[0]

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "answer": self.answer}


@dataclass(frozen=True)
class Encoded:
    """Token ids of one example; the answer (and eos) tokens are ``ids[n_prompt:]``, the scored ones."""

    ids: tuple[int, ...]
    n_prompt: int

    @property
    def prompt_ids(self) -> tuple[int, ...]:
        return self.ids[: self.n_prompt]


def split_file(task_dir: str | Path, split: str) -> Path:
    """The file (or saved Dataset folder) holding one split of a task folder or of a saved DatasetDict."""
    task_dir = Path(task_dir)
    if saved_kind(task_dir) == "dict":
        found = dict_split(task_dir, split)
        if found is None:
            raise DataError(f"{task_dir}: {SAVED} (a DatasetDict) with no {' or '.join(DICT_SPLITS[split])} split")
        return found
    found = [task_dir / f"{split}{suffix}" for suffix in SUFFIXES if (task_dir / f"{split}{suffix}").is_file()]
    found += [task_dir / split] if saved_kind(task_dir / split) == "dataset" else []
    if len(found) > 1:
        raise DataError(f"{task_dir}: holds {' and '.join(p.name for p in found)} for the {split} split; keep one")
    if not found:
        raise DataError(f"{task_dir}: no {split}.json (or .jsonl, .json.gz, .jsonl.gz, .parquet, .csv, .tsv, .arrow, or "
                        f"a saved Dataset folder {split}/) found; a task folder holds train/eval/test files, or is a "
                        "saved DatasetDict")
    return found[0]


def read_examples(path: str | Path, fields: Fields = Fields()) -> tuple[list[Example], Fields]:
    """Every record of a data file (or saved Dataset folder) as an Example, and the fields its prompt and answer were
    read from; numbers and booleans become their JSON spelling (``3``, ``2.5``, ``true``); a missing or null prompt
    or answer, or an empty answer, is refused with the record's index."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: data file not found")
    chosen: list[Fields] = []

    def choose(fmt: str, names: list[str]) -> list[str]:  # only the prompt and answer columns are turned into Python
        chosen.append(resolve_fields(names, fields, f"{path} ({fmt})"))
        return list(dict.fromkeys([chosen[0].prompt, chosen[0].answer]))

    columns, fmt, single = read_columns(path, choose)
    where, used = f"{path} ({fmt})", chosen[0]
    prompts, answers = columns[used.prompt], columns[used.answer]
    rows = len(prompts)
    if single and rows == 1:  # one JSON object (several, one a line, are records)
        prompts, answers = _column_wise(where, used, prompts[0], answers[0])
    examples = [Example(_text(where, i, "prompt", used.prompt, value=p), _text(where, i, "answer", used.answer, value=a))
                for i, (p, a) in enumerate(zip(prompts, answers))]
    return examples, used


def load_examples(path: str | Path, limit: int | None = None, fields: Fields = Fields()) -> list[Example]:
    """The records of a data file (``read_examples``); ``limit``: the first ones only."""
    from ..checks import optional_count

    limit = optional_count("limit", limit)
    examples = read_examples(path, fields)[0]
    return examples[:limit] if limit is not None else examples


def resolve_fields(columns: list[str], given: Fields = Fields(), where: str = "data") -> Fields:
    """The named fields, checked; for a field not named, ``prompt``/``answer`` where present, else the one recognised
    pair (``input``/``output``, ``instruction``/``response``, ``question``/``answer``) present; several: refused."""
    have = set(columns)
    found = ", ".join(map(repr, columns[:12])) + (f" and {len(columns) - 12} more" if len(columns) > 12 else "") or "none"
    for key, name in (("prompt", given.prompt), ("answer", given.answer)):
        if name is not None and name not in have:
            raise DataError(f"{where}: its records have no field {name!r} (the {key}_field given); they have {found}")
    if given.prompt and given.answer:
        return given
    if given.prompt or given.answer:
        i = 1 if given.prompt else 0
        names = list(dict.fromkeys(pair[i] for pair in PAIRS if pair[i] in have))
        if not names or (len(names) > 1 and names[0] != PAIRS[0][i]):
            half = ("prompt", "answer")[i]
            what = "no recognised" if not names else f"several ({', '.join(names)})"
            raise DataError(f"{where}: {what} {half} field among {found}; name it with --{half}-field "
                            f"({half}_field in Python and sequence.json)")
        return Fields(given.prompt or names[0], given.answer or names[0])
    if set(PAIRS[0]) <= have:
        return Fields(*PAIRS[0])
    pairs = [pair for pair in PAIRS[1:] if set(pair) <= have]
    if len(pairs) > 1:
        raise DataError(f"{where}: its records have {' and '.join('/'.join(p) for p in pairs)}, so which is the prompt "
                        f"and answer is ambiguous; {FIELDS_HINT}")
    if not pairs:
        raise DataError(f"{where}: records lack the fields prompt/answer (or input/output, instruction/response, "
                        f"question/answer); they have {found}: {FIELDS_HINT}")
    return Fields(*pairs[0])


def _column_wise(where: str, used: Fields, prompts, answers) -> tuple[list, list]:
    """A single JSON object is read as columns, ``{"prompt": [...], "answer": [...]}``; anything else is refused."""
    if isinstance(prompts, list) and isinstance(answers, list) and len(prompts) == len(answers) and prompts:
        return prompts, answers
    if isinstance(prompts, list) and isinstance(answers, list):
        got = f"columns of {len(prompts)} prompts and {len(answers)} answers"
    else:
        got = f"one JSON object whose {used.prompt!r} and {used.answer!r} are not both lists"
    raise DataError(f"{where}: {got}; expected a list of records, or columns of equal length "
                    f"({{{json.dumps(used.prompt)}: [...], {json.dumps(used.answer)}: [...]}})")


def _text(where: str, index: int, role: str, field: str, value) -> str:
    """A prompt or answer as text: strings as they are, numbers and booleans in their JSON spelling."""
    if isinstance(value, str):
        if value or role == "prompt":
            return value
        raise DataError(f"{where}: record {index} has an empty answer ({field!r}); every answer is scored, give each one")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None:
        raise DataError(f"{where}: record {index} has no {role} ({field!r} is missing or null)")
    raise DataError(f"{where}: record {index} has a non-string {role} ({field!r} is {type(value).__name__} {value!r:.40}); "
                    "a prompt or answer is a string, a number or a boolean")


def load_split(task_dir: str | Path, split: str, limit: int | None = None, rows: str = "first",
               fields: Fields = Fields()) -> list[Example]:
    """One split of a task folder; with ``limit``, its first rows, or its last (``rows="last"``: TRACE's test rows)."""
    return read_split(task_dir, split, limit, rows, fields=fields)[0]


def read_split(task_dir: str | Path, split: str, limit: int | None = None, rows: str = "first",
               fields: Fields = Fields()) -> tuple[list[Example], Fields]:
    """``load_split`` and the fields it read; an O-LoRA CL_Benchmark task folder is read by ``standard_cl``."""
    from ..checks import optional_count
    from . import standard_cl

    limit = optional_count("limit", limit)
    if standard_cl.is_task(task_dir):
        if (fields.prompt or fields.answer) and not fields.default:
            raise ConfigError(f"{task_dir}: a CL_Benchmark task folder builds its prompt from sentence and label as "
                              "O-LoRA does; drop --prompt-field/--answer-field (prompt_field/answer_field)")
        return [Example(*row) for row in standard_cl.read_split(task_dir, split, limit, rows)], Fields(*PAIRS[0])
    examples, used = read_examples(split_file(task_dir, split), fields)
    if limit is None:
        return examples, used
    return (examples[max(0, len(examples) - limit):] if rows == "last" else examples[:limit]), used


def read_data(path: str | Path, split: str, limit: int | None = None, fields: Fields = Fields()) -> tuple[list[Example], Fields]:
    """Examples of ``split`` from a task folder or saved DatasetDict, or all of a data file or saved Dataset (which
    has no splits); and the fields read."""
    path = Path(path)
    if path.is_dir() and saved_kind(path) != "dataset":
        return read_split(path, split, limit, fields=fields)
    from ..checks import optional_count

    limit = optional_count("limit", limit)
    examples, used = read_examples(path, fields)
    return (examples[:limit] if limit is not None else examples), used


DEFAULT_MAX_LENGTH = 1024  # tokens per example, in every command, unless the model has fewer positions


def model_positions(model) -> int | None:
    """How many positions the model was built for (None when its config does not say)."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def resolve_max_length(model, requested: int | None) -> int:
    """``requested``, or the shared default capped by the model's positions; a length the model cannot take is refused."""
    positions = model_positions(model)
    if requested is None:
        return min(DEFAULT_MAX_LENGTH, positions) if positions else DEFAULT_MAX_LENGTH
    if positions and requested > positions:
        from ..errors import ConfigError

        raise ConfigError(f"max_length={requested} is longer than the base model's {positions} positions")
    return requested


def answer_tokens(tokenizer) -> tuple[list[int], int]:
    """The tokens around every scored row: ``[bos]`` (or none) and eos, which ends every answer."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos token; modeconn scores answer + eos")
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []), eos


def fit_row(bos: list[int], prompt: list[int], answer: list[int], max_length: int) -> Encoded | None:
    """``bos + prompt + answer`` with the prompt cut from the left to fit ``max_length``; None when the answer leaves
    no room for one prompt token."""
    room = max_length - len(bos) - len(answer)
    if room < 1:
        return None
    kept = prompt[-room:]
    return Encoded(tuple(bos + kept + answer), len(bos) + len(kept))


def encode_counted(tokenizer, examples: list[Example], max_length: int = DEFAULT_MAX_LENGTH) -> tuple[list[Encoded], int]:
    """Tokenise as ``bos + prompt + answer + eos``, prompts cut from the left to fit ``max_length``; also return how
    many prompts were cut. Answers are never cut: if any does not fit, all that do not are counted and refused."""
    bos, eos = answer_tokens(tokenizer)
    encoded, cut, too_long = [], 0, []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(ex.answer, add_special_tokens=False)["input_ids"] + [eos]
        row = fit_row(bos, prompt, answer, max_length)
        if row is None:
            too_long.append(len(answer))
            continue
        cut += len(prompt) > row.n_prompt - len(bos)
        encoded.append(row)
    if too_long:
        raise DataError(f"{len(too_long)} of {len(examples)} answers do not fit max_length={max_length} (the longest is "
                        f"{max(too_long)} tokens with eos, and each needs a prompt token); raise the max_length={max_length}")
    return encoded, cut


def encode(tokenizer, examples: list[Example], max_length: int = DEFAULT_MAX_LENGTH) -> list[Encoded]:
    """``encode_counted`` without the count."""
    return encode_counted(tokenizer, examples, max_length)[0]


def collate(batch: list[Encoded], pad_id: int) -> dict:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside the answer + eos)."""
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        labels[i, e.n_prompt : n] = ids[i, e.n_prompt : n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
