"""Reading one data file, or a `datasets` ``save_to_disk`` folder, into plain columns: JSON, JSON Lines (gzip too),
Parquet, CSV, TSV or Arrow, all through `datasets`, in memory, leaving nothing in the user's datasets cache."""
from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from ..errors import DataError

FORMATS = {".jsonl.gz": "JSON Lines", ".json.gz": "JSON", ".jsonl": "JSON Lines", ".json": "JSON",
           ".parquet": "Parquet", ".csv": "CSV", ".tsv": "TSV", ".arrow": "Arrow"}
SUFFIXES = tuple(FORMATS)
SAVED = "a datasets save_to_disk folder"
DICT_SPLITS = {"train": ("train",), "eval": ("validation", "eval", "valid", "dev"), "test": ("test",)}


def file_format(path: Path) -> str | None:
    """The format a file's name says (``train.jsonl.gz``: JSON Lines), or None."""
    name = path.name.lower()
    return next((kind for suffix, kind in FORMATS.items() if name.endswith(suffix)), None)


def data_stem(path: Path) -> str:
    """A data file's name without its format's suffix (``news.jsonl.gz``: ``news``)."""
    name = path.name
    suffix = next((s for s in FORMATS if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)] if suffix else path.stem


def saved_kind(path: Path) -> str | None:
    """``"dataset"`` or ``"dict"`` for a folder `datasets` wrote with ``save_to_disk``; None for any other path."""
    if (path / "dataset_dict.json").is_file():
        return "dict"
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        return "dataset"
    return None


def dict_split(folder: Path, split: str) -> Path | None:
    """The Dataset folder of a saved DatasetDict that holds ``split`` (eval: its ``validation`` split)."""
    names = _dict_splits(folder)
    return next((folder / name for name in DICT_SPLITS[split] if name in names), None)


def _dict_splits(folder: Path) -> list[str]:
    try:
        names = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
    except (ValueError, OSError, AttributeError, RecursionError):
        raise DataError(f"{folder}: {SAVED} whose dataset_dict.json is unreadable; save it again with "
                        "DatasetDict.save_to_disk") from None
    return [n for n in names if isinstance(n, str) and (folder / n).is_dir()]


def read_columns(path: Path, choose) -> tuple[dict[str, list], str, bool]:
    """The columns ``choose(format, column names)`` picks of a file (or saved Dataset), as Python lists; the format's
    name; and whether the file held a single JSON object (column-wise JSON, or one record where a list was expected)."""
    if path.is_dir():
        kind = saved_kind(path)
        if kind == "dict":
            raise DataError(f"{path}: {SAVED} holding a DatasetDict ({', '.join(_dict_splits(path))}); pass it as a "
                            "task folder (--data NAME=FOLDER), its train/validation/test splits are read")
        if kind is None:
            raise DataError(f"{path}: a folder, but neither a task folder nor {SAVED}")
        return _columns(path, SAVED, lambda: _load_saved(path), choose), SAVED, False
    fmt = file_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown data format; name the file .json, .jsonl, .json.gz, .jsonl.gz, .parquet, "
                        ".csv, .tsv or .arrow")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: data file is empty; expected {_expected(fmt)}")
    single = fmt == "JSON" and _first_char(path) == "{"
    return _columns(path, fmt, lambda: _load_file(path, fmt), choose), fmt, single


def _columns(path: Path, fmt: str, load, choose) -> dict[str, list]:
    """Run a `datasets` read quietly; any failure becomes one line naming the format and the reader's reason."""
    import datasets  # noqa: F401  (first: importing it sets its logger's level, which the block below lowers)

    from .quiet import quiet_logger, quiet_progress

    try:
        # its error log repeats, with a traceback, what we raise below; its bar is noise for one small file
        with quiet_logger("datasets"), quiet_progress("datasets"):
            table = load()
            if len(table) == 0:
                raise DataError(f"{path} ({fmt}): no records; expected {_expected(fmt)}")
            return table.select_columns(choose(fmt, table.column_names)).to_dict()
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"{path}: not readable as {fmt} (nested too deeply); expected {_expected(fmt)}") from None
    except Exception as exc:  # datasets and pyarrow raise many types for unreadable files
        raise DataError(f"{path}: not readable as {fmt} ({_diagnose(path, fmt, exc)}); expected {_expected(fmt)}") from None


def _load_file(path: Path, fmt: str):
    import datasets

    if fmt == "Arrow":
        return datasets.Dataset.from_file(str(path), in_memory=True)
    builder, options = {"JSON": ("json", {}), "JSON Lines": ("json", {}), "Parquet": ("parquet", {})}.get(fmt, ("csv", {}))
    if fmt in ("CSV", "TSV"):
        options = _csv_options(path, "\t" if fmt == "TSV" else ",")
    # a private cache, removed afterwards: the user's datasets cache gets no Arrow copy of their data
    with tempfile.TemporaryDirectory(prefix="modeconn-data-") as cache:
        return datasets.load_dataset(builder, data_files=str(path), split="train", keep_in_memory=True, cache_dir=cache,
                                     **options)


def _csv_options(path: Path, sep: str) -> dict:
    """Every column read as text, as written ('007' stays '007'); only an empty cell is missing."""
    import csv

    import datasets

    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    header = [name or f"Unnamed: {i}" for i, name in enumerate(header)]  # pandas' name for a blank one (an index)
    if not header or len(set(header)) != len(header):
        raise DataError(f"{path} ({'TSV' if sep == chr(9) else 'CSV'}): its first line {header!r} is not a header of "
                        "distinct column names")
    features = datasets.Features({name: datasets.Value("string") for name in header})
    return {"sep": sep, "features": features, "keep_default_na": False}


def _load_saved(path: Path):
    import datasets

    return datasets.load_from_disk(str(path), keep_in_memory=True)


def _first_char(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:
            return f.read(4096).lstrip()[:1]
    except (OSError, UnicodeDecodeError, EOFError):
        return ""


def _expected(fmt: str) -> str:
    if fmt == "JSON":
        return 'a list of {"prompt", "answer"} records (or columns: {"prompt": [...], "answer": [...]})'
    if fmt == "JSON Lines":
        return 'one {"prompt", "answer"} record per line'
    return "prompt and answer columns"


def _diagnose(path: Path, fmt: str, exc: Exception) -> str:
    """A precise reason: the JSON parser's own message where it applies, else the first line of the deepest cause."""
    if fmt in ("JSON", "JSON Lines"):
        try:
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                text = f.read()
            if fmt == "JSON":
                parsed = json.loads(text)
                if parsed in ([], {}):
                    return "it holds no records"
                if not isinstance(parsed, (list, dict)):
                    return f"a JSON {type(parsed).__name__}, not a list of records"
            else:
                for n, line in enumerate(text.splitlines(), 1):
                    if line.strip():
                        try:
                            json.loads(line)
                        except ValueError as err:
                            return f"line {n}: invalid JSON: {err}"
        except RecursionError:
            return "nested too deeply"
        except (ValueError, UnicodeDecodeError) as err:
            return f"invalid JSON: {err}"
        except (OSError, EOFError) as err:
            return f"not gzip-compressed: {err}" if path.name.lower().endswith(".gz") else str(err)
    for _ in range(20):  # the deepest cause says what the reader met; bounded, a chain may loop
        if (exc.__cause__ or exc.__context__) is None:
            break
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip()
    if "corresponds to no data" in text:  # datasets' words for a file without rows
        return "only a header line, no records" if fmt in ("CSV", "TSV") else "it holds no records"
    return text.splitlines()[0] if text else type(exc).__name__
