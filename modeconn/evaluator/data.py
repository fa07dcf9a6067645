"""Task data in the TRACE / LLMCL format: ``<root>/<task>/{train,eval,test}.json``, each a list of
``{"prompt": ..., "answer": ...}``; and its tokenisation as ``bos + prompt + answer + eos``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

SPLITS = ("train", "eval", "test")
SUFFIXES = (".json", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str


@dataclass(frozen=True)
class Encoded:
    """Token ids of one example; the answer (and eos) tokens are ``ids[n_prompt:]``, the scored ones."""

    ids: tuple[int, ...]
    n_prompt: int

    @property
    def prompt_ids(self) -> tuple[int, ...]:
        return self.ids[: self.n_prompt]


def split_file(task_dir: str | Path, split: str) -> Path:
    """The file holding one split of a task folder (json, jsonl or parquet)."""
    task_dir = Path(task_dir)
    for suffix in SUFFIXES:
        candidate = task_dir / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(f"{task_dir}: no {split}.json (or .jsonl/.parquet) found; a task folder holds train/eval/test files")


def load_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """Read a list of prompt/answer records with `datasets`, checking every record; ``limit``: the first ones only."""
    from ..checks import optional_count

    limit = optional_count("limit", limit)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: data file is empty; expected a JSON list of {{\"prompt\": ..., \"answer\": ...}}")
    import datasets

    from .quiet import quiet_logger, quiet_progress

    kind = "parquet" if path.suffix == ".parquet" else "json"
    try:
        # its error log repeats, with a traceback, what we raise below; its bar is noise for one small file
        with quiet_logger("datasets"), quiet_progress("datasets"):
            table = datasets.load_dataset(kind, data_files=str(path), split="train", keep_in_memory=True)
    except Exception as exc:  # datasets raises many types for unreadable files
        raise DataError(f"{path}: not readable as {kind} ({_diagnose(path, exc)}); "
                        "expected a list of {\"prompt\", \"answer\"} records") from None
    missing = {"prompt", "answer"} - set(table.column_names)
    if missing:
        raise DataError(f"{path}: records lack the field(s) {sorted(missing)}; each needs \"prompt\" and \"answer\" strings")
    if len(table) == 0:
        raise DataError(f"{path}: no records; expected a non-empty list of {{\"prompt\", \"answer\"}} records")
    examples = []
    for i, (prompt, answer) in enumerate(zip(table["prompt"], table["answer"])):
        if not isinstance(prompt, str) or not isinstance(answer, str):
            raise DataError(f"{path}: record {i} has a non-string prompt or answer")
        examples.append(Example(prompt, answer))
    return examples[:limit] if limit is not None else examples


def _diagnose(path: Path, exc: Exception) -> str:
    """A precise reason for an unreadable file: the JSON parser's own message where it applies."""
    if path.suffix == ".json":
        import json

        try:
            parsed = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            return f"invalid JSON: {err}"
        if parsed == [] or parsed == {}:
            return "it holds no records"
        if not isinstance(parsed, list):
            return f"a JSON {type(parsed).__name__}, not a list of records"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_split(task_dir: str | Path, split: str, limit: int | None = None, rows: str = "first") -> list[Example]:
    """One split of a task folder; with ``limit``, its first rows, or its last (``rows="last"``: TRACE's test rows)."""
    if rows == "last" and limit is not None:
        examples = load_examples(split_file(task_dir, split))
        return examples[max(0, len(examples) - limit):]
    return load_examples(split_file(task_dir, split), limit)


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


def encode_counted(tokenizer, examples: list[Example], max_length: int = DEFAULT_MAX_LENGTH) -> tuple[list[Encoded], int]:
    """Tokenise as ``bos + prompt + answer + eos``, prompts cut from the left to fit ``max_length``; also return how
    many prompts were cut. Answers are never cut: if any does not fit, all that do not are counted and refused."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos token; modeconn scores answer + eos")
    encoded, cut, too_long = [], 0, []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(ex.answer, add_special_tokens=False)["input_ids"] + [eos]
        room = max_length - len(bos) - len(answer)
        if room < 1:
            too_long.append(len(answer))
            continue
        cut += len(prompt) > room
        prompt = prompt[-room:]
        encoded.append(Encoded(tuple(bos + prompt + answer), len(bos) + len(prompt)))
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
