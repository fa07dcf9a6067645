"""O-LoRA's CL_Benchmark task folders as they are (github.com/cmnfriend/O-LoRA): ``CL_Benchmark/<family>/<task>/``
with ``{train,dev,test}.json`` lists of ``{"sentence", "label"}`` rows and ``labels.json``, and
``configs/instruction_config.json`` beside ``CL_Benchmark/``; each row as an ``Example`` whose prompt is the one
O-LoRA's decoder path feeds the model, whose answer is the label and whose choices are ``labels.json``
(``data.read_split`` reads such a folder through this module).

The prompt, for family F, task T, labels L and sentence S (file:line in O-LoRA's src/ unless a path is given):
  ``"Task:F\\nDataset:T\\n" + instruction + "Option: " + ", ".join(L) + " \\n" + S + "\\nAnswer:"``
  - ``Task:``/``Dataset:`` prefix: uie_collator.py:59-67, on in every script (scripts/order_1.sh:31-32), F being the
    family folder (uie_dataset_lora.py:507) and T the task folder (its "dataset name", :505);
  - instruction: the family's first zero-shot one (instruction_strategy single, scripts/order_1.sh:19;
    uie_dataset_lora.py:247-252);
  - options, sentence, answer prefix: uie_dataset_lora.py:277,283 (the same line for SC, TC, NLI, QQP, BoolQA, MultiRC,
    WiC); COPA has no instruction and no options, ``"Task:COPA\\nDataset:COPA\\n" + S + "\\nAnswer:"`` (:413);
  - the label follows "Answer:" with no space and is scored with eos after it (uie_collator.py:149-150).
Not reproduced: O-LoRA fills the sentence in with ``str.format`` inside a ``try/finally: return`` (uie_collator.py:77-80),
so braces in an instruction or label would silently drop the sentence; here it is concatenated. O-LoRA tokenises the
joined ``prompt + label`` string (:172), modeconn the prompt and the label apart (so the scored tokens are the label's
own; they differ only where a tokenizer merges across "Answer:" and the label). O-LoRA cuts long inputs from the
right, keeping their start (:158-180), which drops "Answer:" and, in training, the label; modeconn cuts prompts from
the left to ``--max-length`` and never cuts the answer (``data.encode_counted``). No lower-casing of the text
(O-LoRA's lower-casing is in its metric, ``scoring.olora_exact_match``).

Splits: ``test`` is test.json, less its rows labelled "-" (GLUE's no-gold-label rows of MNLI: ``_rows``). Upstream dev.json is byte-identical to test.json, so it is never read; the ``eval``
split (for choosing hyperparameters) is carved from train.json: 10% of its rows (``n // 10``), at most 500 and at least
1, drawn by ``numpy.random.default_rng(0).permutation`` — a fixed seed, not the run's, so every method and seed sees
the same eval rows — and ``train`` is the other rows in their file order. ``carve_record`` describes the carve for a
run to record. Nothing is written into the data folder.
"""
from __future__ import annotations

import filecmp
import hashlib
import json
from pathlib import Path

from ..errors import ConfigError, DataError

LABELS = "labels.json"
INSTRUCTIONS = Path("configs") / "instruction_config.json"
CL_BENCHMARK = "CL_Benchmark"
NO_INSTRUCTION = {"COPA"}  # uie_dataset_lora.py:413: the sentence and "Answer:" only
EVAL_SEED, EVAL_FRACTION, EVAL_CAP = 0, 10, 500  # eval rows: n // EVAL_FRACTION, clipped to [1, EVAL_CAP]
NO_GOLD = "-"  # GLUE's label for a test row without a gold label (MNLI)
LOOK_UP = 4  # folders above a task folder searched for configs/instruction_config.json


def is_task(folder: str | Path) -> bool:
    """A CL_Benchmark task folder: one holding labels.json."""
    return (Path(folder) / LABELS).is_file()


def _json(path: Path, what: str):
    if not path.is_file():
        raise DataError(f"{path}: not found ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None


def instruction_file(folder: Path) -> Path:
    """``configs/instruction_config.json`` in the nearest folder above the task folder (O-LoRA: beside CL_Benchmark/)."""
    looked = list(Path(folder).absolute().parents)[:LOOK_UP]
    for above in looked:
        if (above / INSTRUCTIONS).is_file():
            return above / INSTRUCTIONS
    raise DataError(f"{folder}: no {INSTRUCTIONS.as_posix()} found in {looked[0]} or the {len(looked) - 1} folders above "
                    f"it; O-LoRA's layout keeps configs/ beside {CL_BENCHMARK}/")


def labels(folder: str | Path) -> tuple[str, ...]:
    """The task's answer space, labels.json, in its order (which is the order of the prompt's options)."""
    path = Path(folder) / LABELS
    found = _json(path, "the task's label list")
    if not isinstance(found, list) or not found or not all(isinstance(x, str) and x for x in found):
        raise DataError(f"{path}: expected a non-empty JSON list of label strings")
    return tuple(found)


def prompt_parts(folder: str | Path) -> tuple[str, str]:
    """The task's prompt before and after the row's sentence (see the module docstring)."""
    folder = Path(folder)
    family, task = folder.absolute().parent.name, folder.name
    prefix = f"Task:{family}\nDataset:{task}\n"  # uie_collator.py:61,64-65
    if family in NO_INSTRUCTION:
        return prefix, "\nAnswer:"
    path = instruction_file(folder)
    config = _json(path, "O-LoRA's instructions")
    zero_shot = [e.get("instruction") for e in (config.get(family) or []) if isinstance(e, dict)
                 and e.get("instruction_type") == "zero-shot"] if isinstance(config, dict) else []
    if not zero_shot or not isinstance(zero_shot[0], str):
        known = sorted(config) if isinstance(config, dict) else []
        raise DataError(f"{path}: no zero-shot instruction for family {family!r} (the folder above {task}); it has "
                        f"{', '.join(known) or 'none'}")
    options = ", ".join(labels(folder))  # uie_dataset_lora.py:277
    return prefix + zero_shot[0] + "Option: " + options + " \n", "\nAnswer:"


def _rows(folder: Path, split_name: str, choices: tuple[str, ...]) -> list[tuple[str, str]]:
    """The split's ``(sentence, label)`` rows. A test row labelled "-" (GLUE's mark of a row without a gold label:
    131 of MNLI's test rows) is left out (``unscorable``): O-LoRA keeps and scores them, always wrong, which caps its
    MNLI accuracy at 98.3%; any other label outside labels.json is an error."""
    path = folder / f"{split_name}.json"
    rows = _json(path, f"the {split_name} split of a CL_Benchmark task")
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of {{\"sentence\", \"label\"}} rows")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("sentence"), str) or not isinstance(row.get("label"), str):
            raise DataError(f"{path}: row {i} is not a {{\"sentence\": str, \"label\": str}} record")
        if row["label"] == NO_GOLD and NO_GOLD not in choices and split_name == "test":
            continue
        if row["label"] not in choices:
            raise DataError(f"{folder.name}: row {i} of {split_name}.json has label {row['label']!r}, which is not in "
                            f"{LABELS} ({', '.join(choices)}); fix the row or add the label")
        out.append((row["sentence"], row["label"]))
    return out


def eval_indices(n: int) -> list[int]:
    """The train.json rows carved out as the eval split, sorted; the same for every run on a file of ``n`` rows."""
    import numpy as np

    if n < 2:
        raise DataError(f"train.json has {n} row(s); the eval split is carved from it, so it needs at least 2")
    k = min(EVAL_CAP, max(1, n // EVAL_FRACTION))
    return sorted(int(i) for i in np.random.default_rng(EVAL_SEED).permutation(n)[:k])


def carve_record(folder: str | Path) -> dict:
    """What the eval carve of a task folder is, for a run to record: seed, rule, row counts, the sha256 of the sorted
    eval indices (as JSON), and whether dev.json is test.json byte for byte (as upstream; dev is never read)."""
    folder = Path(folder)
    n = len(_rows(folder, "train", labels(folder)))
    chosen = eval_indices(n)
    dev, test = folder / "dev.json", folder / "test.json"
    return {"seed": EVAL_SEED, "rule": f"n // {EVAL_FRACTION} rows of train.json, in [1, {EVAL_CAP}], by "
                                       f"numpy.random.default_rng({EVAL_SEED}).permutation(n)",
            "train_rows": n - len(chosen), "eval_rows": len(chosen),
            "eval_sha256": hashlib.sha256(json.dumps(chosen).encode()).hexdigest(),
            "test_rows_left_out": unscorable(folder),
            "dev_same_as_test": filecmp.cmp(dev, test, shallow=False) if dev.is_file() and test.is_file() else None}


def unscorable(folder: str | Path) -> int:
    """How many test.json rows are labelled "-" without it being a label (left out of the test split)."""
    folder = Path(folder)
    rows = _json(folder / "test.json", "the test split of a CL_Benchmark task")
    if NO_GOLD in labels(folder) or not isinstance(rows, list):
        return 0
    return sum(isinstance(r, dict) and r.get("label") == NO_GOLD for r in rows)


def carve_records(tasks) -> dict[str, dict]:
    """``carve_record`` of each ``(task, folder)`` that is a CL_Benchmark task folder."""
    return {task: carve_record(folder) for task, folder in tasks if is_task(folder)}


def read_split(folder: str | Path, split: str, limit: int | None = None,
               rows: str = "first") -> list[tuple[str, str, tuple[str, ...]]]:
    """``split`` (train, eval or test) of a CL_Benchmark task folder as ``(prompt, answer, choices)``, which
    ``data.read_split`` makes Examples; ``limit``: its first (or last) rows."""
    folder = Path(folder)
    if split not in ("train", "eval", "test"):
        raise ConfigError(f"split must be train, eval or test, got {split!r}")
    choices = labels(folder)
    head, tail = prompt_parts(folder)
    if split == "test":
        chosen = _rows(folder, "test", choices)
    else:
        train = _rows(folder, "train", choices)
        carved = set(eval_indices(len(train)))
        chosen = [r for i, r in enumerate(train) if (i in carved) == (split == "eval")]
    examples = [(head + s + tail, label, choices) for s, label in chosen]
    if limit is None:
        return examples
    return examples[max(0, len(examples) - limit):] if rows == "last" else examples[:limit]


def find_tasks(root: str | Path) -> dict[str, Path]:
    """Every task folder under ``root`` (the folder holding CL_Benchmark/, or CL_Benchmark/ itself), by task name,
    whatever its family; a task name under two families is refused."""
    root = Path(root)
    bench = root / CL_BENCHMARK if (root / CL_BENCHMARK).is_dir() else root
    if not bench.is_dir():
        raise DataError(f"{root}: not a folder; pass the folder holding {CL_BENCHMARK}/ (or {CL_BENCHMARK}/ itself)")
    found: dict[str, Path] = {}
    for family in sorted(p for p in bench.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for task in sorted(p for p in family.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if task.name in found:
                raise DataError(f"{bench}: task {task.name} is under both {found[task.name].parent.name}/ and "
                                f"{family.name}/; keep one")
            found[task.name] = task
    return found


def missing_parts(folder: Path) -> list[str]:
    """What a task folder lacks for training and testing (labels.json, train.json, test.json)."""
    return [name for name in (LABELS, "train.json", "test.json") if not (folder / name).is_file()]
