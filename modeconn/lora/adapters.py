"""Load and validate LoRA adapters as plain data: ``module name -> (A, B)`` tensors plus each module's scale."""
from __future__ import annotations

import json
import math
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..errors import CheckpointError, CompatibilityError, ModeconnError
from .config_fields import refusal

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
PROMPT_FILE = "prompt_config.json"  # what the prompt methods (l2p, pp) write instead of an adapter
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BACKWARD_ONLY = re.compile(r"\.lora_velora_embed(\.[^.]+)?$")  # VeLoRA's projection: used by its backward pass only


@dataclass(frozen=True)
class LoraWeights:
    """One point in LoRA space. ``factors[m] = (A [r, in], B [out, r])``; the module's update is ``scaling[m] * B @ A``."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scaling: dict[str, float]
    base_model: str | None = None
    source: str = ""
    config: dict = field(default_factory=dict, repr=False)

    @property
    def modules(self) -> list[str]:
        return sorted(self.factors)

    def rank(self, module: str) -> int:
        return self.factors[module][0].shape[0]

    def delta(self, module: str) -> torch.Tensor:
        """The merged update ΔW = scaling · B A of one module, shape ``[out, in]``."""
        a, b = self.factors[module]
        return self.scaling[module] * (b @ a)

    def folded(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Factors with the scale folded into B, so that ΔW = B A."""
        return {m: (a, self.scaling[m] * b) for m, (a, b) in self.factors.items()}

    def canonical(self) -> "LoraWeights":
        """SVD-balanced factors ``B = U√S, A = √S Vᵀ`` of each ΔW: the same adapter, a factorisation-free form."""
        factors = {}
        for m in self.factors:
            a, b = self.factors[m]
            u, s, vh = torch.linalg.svd(self.delta(m).double(), full_matrices=False)
            r = a.shape[0]
            root = s[:r].sqrt()
            factors[m] = ((root[:, None] * vh[:r]).to(a.dtype), (u[:, :r] * root).to(b.dtype))
        return LoraWeights(factors, {m: 1.0 for m in factors}, self.base_model, self.source + " (canonical)", config=self.config)


def _resolve_folder(location: str) -> Path:
    path = Path(location)
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{location}: not a folder; an adapter is a folder with {CONFIG_FILE} and {SAFETENSORS_FILE}")
        return path
    if _HUB_ID.match(location) and not location.startswith("."):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(location, allow_patterns=[CONFIG_FILE, SAFETENSORS_FILE, PICKLE_FILE]))
        except Exception as exc:  # offline, missing repo, auth: all mean "cannot get it"
            raise CheckpointError(f"{location}: not a local folder, and not downloadable as a hub id ({type(exc).__name__})") from None
    raise CheckpointError(f"{location}: no such adapter folder")


def _check_config(config, path: Path) -> None:
    """The fields the scale is computed from have the types peft writes (a hand-edited config can break them)."""
    from ..checks import finite

    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object (peft's adapter config), got {type(config).__name__}")
    try:
        finite("lora_alpha", config.get("lora_alpha", 8), 0, low_open=True)
        for key in ("alpha_pattern", "rank_pattern"):
            pattern = config.get(key) or {}
            if not isinstance(pattern, dict):
                raise CheckpointError(f"{key} must be a mapping, got {pattern!r}")
            for name, value in pattern.items():
                finite(f"{key}[{name!r}]", value, 0, low_open=True)
    except ModeconnError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if not isinstance(config.get("use_rslora", False), bool):
        raise CheckpointError(f"{path}: use_rslora must be true or false, got {config['use_rslora']!r}")


def _scaling(config: dict, module: str, rank: int) -> float:
    from peft.utils.other import get_pattern_key

    alpha_pattern = config.get("alpha_pattern") or {}
    alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), module), config.get("lora_alpha", 8))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _configured_rank(config: dict, module: str) -> int | None:
    """The rank peft would build ``module`` with (``rank_pattern``, else ``r``): peft scales by it, not by the tensors'."""
    from peft.utils.other import get_pattern_key

    rank_pattern = config.get("rank_pattern") or {}
    return rank_pattern.get(get_pattern_key(rank_pattern.keys(), module), config.get("r"))


@contextmanager
def quiet_pickle_warnings() -> Iterator[None]:
    """Inside the block, torch's note on the pickle protocol of a file it is about to refuse or read is not shown: the
    outcome is reported in one line instead (a scoped filter, not a process-wide one)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
        yield


def safe_unpickle(path: Path):
    """``torch.load(weights_only=True)``: tensors and plain containers only, no code runs."""
    with quiet_pickle_warnings():
        return torch.load(path, map_location="cpu", weights_only=True)


def unpickling_reason(exc: Exception) -> str:
    """The line of torch's many-line refusal that names what was refused (``Unsupported global: os.system``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "global" in line.split(":")[0]]
    return f"{type(exc).__name__}: {(named or lines or [''])[0][:160]}"


def _read_tensors(folder: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if (folder / SAFETENSORS_FILE).is_file():
        from safetensors.torch import load_file

        try:
            return load_file(folder / SAFETENSORS_FILE, device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{folder / SAFETENSORS_FILE}: unreadable safetensors file ({exc})") from None
    if (folder / PICKLE_FILE).is_file():
        if not allow_pickle:
            raise CheckpointError(
                f"{folder}: holds only {PICKLE_FILE} (a pickle); pass allow_pickle=True to load it with torch.load(weights_only=True)"
            )
        try:
            tensors = safe_unpickle(folder / PICKLE_FILE)
        except Exception as exc:  # the unpickler refuses anything but tensors; its message runs over many lines
            raise CheckpointError(f"{folder / PICKLE_FILE}: refused or unreadable ({unpickling_reason(exc)})") from None
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise CheckpointError(f"{folder / PICKLE_FILE}: not a mapping of tensor names to tensors")
        return tensors
    raise CheckpointError(f"{folder}: no {SAFETENSORS_FILE} found")


def load_adapter(location: str | Path, allow_pickle: bool = False) -> LoraWeights:
    """Read a peft LoRA adapter (folder or hub id) and check it is a plain, finite LoRA."""
    from .. import checks

    checks.text("location", location), checks.flag("allow_pickle", allow_pickle)  # "no" is truthy: refused, not read
    folder = _resolve_folder(str(location))
    config_path = folder / CONFIG_FILE
    if (folder / PROMPT_FILE).is_file():
        raise CheckpointError(f"{location}: soft prompts from a prompt method (see its {PROMPT_FILE}), not a LoRA adapter; "
                              "the analyses walk paths between LoRA adapters")
    if not config_path.is_file():
        raise CheckpointError(f"{location}: not a peft adapter folder (no {CONFIG_FILE})")
    try:
        config = checks.load_json_text(config_path.read_text())  # no RecursionError on a deeply nested file
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from None
    _check_config(config, config_path)
    if config.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{location}: a {config.get('peft_type')} adapter; modeconn works on LoRA adapters")
    why = refusal(config)
    if why:
        raise CheckpointError(f"{location}: {why}")
    raw = _read_tensors(folder, allow_pickle)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in raw.items():
        if _BACKWARD_ONLY.search(key):
            continue
        match = _KEY.match(key)
        if not match:
            raise CheckpointError(f"{location}: unsupported tensor '{key}' (only lora_A / lora_B weights of linear layers)")
        pairs.setdefault(match["module"], {})[match["which"]] = tensor
    if not pairs:
        raise CheckpointError(f"{location}: the adapter holds no LoRA weights")
    factors, scaling = {}, {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"{location}: module {module} lacks its lora_{'B' if 'A' in ab else 'A'} weight")
        a, b = ab["A"].float(), ab["B"].float()
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"{location}: module {module} has inconsistent shapes A{tuple(a.shape)} B{tuple(b.shape)}")
        if a.shape[0] == 0:
            raise CheckpointError(f"{location}: module {module} has rank 0 (an empty update); save the adapter with r >= 1")
        configured = _configured_rank(config, module)
        if isinstance(configured, int) and not isinstance(configured, bool) and configured != a.shape[0]:
            raise CheckpointError(f"{location}: module {module} has rank {a.shape[0]} but its config says "
                                  f"{configured} (r or rank_pattern); peft would not load it either")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise CheckpointError(f"{location}: module {module} has non-finite (NaN or inf) weights")
        factors[module] = (a, b)
        scaling[module] = _scaling(config, module, a.shape[0])
    return LoraWeights(factors, scaling, config.get("base_model_name_or_path"), str(location), config=config)


def check_compatible(adapters: list[LoraWeights], space: str, base_given: bool = False) -> None:
    """Refuse adapters that cannot share a path: different base, modules or shapes; unequal ranks in factor space."""
    first = adapters[0]
    for other in adapters[1:]:
        if not base_given and first.base_model != other.base_model:
            raise CompatibilityError(
                f"{first.source} and {other.source} name different base models ({first.base_model!r} vs {other.base_model!r}); "
                "if they are the same model under two names, pass base=NAME to choose it"
            )
        if set(first.factors) != set(other.factors):
            diff = sorted(set(first.factors) ^ set(other.factors))
            raise CompatibilityError(f"{first.source} and {other.source} adapt different modules (e.g. {diff[0]})")
        for m in first.factors:
            (a1, b1), (a2, b2) = first.factors[m], other.factors[m]
            if a1.shape[1] != a2.shape[1] or b1.shape[0] != b2.shape[0]:
                raise CompatibilityError(f"{m}: layer shapes differ between {first.source} and {other.source}")
            if space == "factor" and a1.shape[0] != a2.shape[0]:
                raise CompatibilityError(
                    f"{m}: ranks differ ({a1.shape[0]} vs {a2.shape[0]}); a factor-space path needs equal ranks, use space='delta'"
                )


def _target_modules(modules) -> list[str] | str:
    """peft's ``target_modules`` for exactly these modules: their last names, unless one is a bare index (CTRL's
    ``ffn.0``, GIT's ``output.0``), which peft would also match in whole layers; then a regex of the full names."""
    short = sorted({m.rsplit(".", 1)[-1] for m in modules})
    if not any(name.isdigit() for name in short):
        return short
    import re

    return "(" + "|".join(re.escape(m) for m in sorted(modules)) + ")"


def adapter_files(weights: LoraWeights, config: dict | None = None) -> dict:
    """``{file name: content}`` of ``weights`` as a peft adapter folder (scales folded so that peft's alpha / r
    reproduces ΔW exactly), for ``files.write_all`` or ``save_adapter``."""
    from safetensors.torch import save_file

    ranks = {weights.rank(m) for m in weights.factors}
    r = max(ranks)
    cfg = dict(config or weights.config)
    cfg.update(peft_type="LORA", r=r, lora_alpha=r, use_rslora=False, alpha_pattern={},
               rank_pattern={m: weights.rank(m) for m in weights.factors if weights.rank(m) != r},
               target_modules=_target_modules(weights.factors), base_model_name_or_path=weights.base_model)
    cfg.setdefault("task_type", "CAUSAL_LM")
    tensors = {}
    for m, (a, b) in weights.folded().items():
        tensors[f"base_model.model.{m}.lora_A.weight"] = a.contiguous()
        # peft scales by alpha / rank(m); rank_pattern keeps alpha = r only for the default rank, so undo per module
        tensors[f"base_model.model.{m}.lora_B.weight"] = (b * weights.rank(m) / r).contiguous()
    return {SAFETENSORS_FILE: lambda path: save_file(tensors, path), CONFIG_FILE: json.dumps(cfg, indent=2) + "\n"}


def save_adapter(weights: LoraWeights, folder: str | Path, config: dict | None = None) -> Path:
    """Write ``weights`` as a peft adapter folder, replacing the folder whole."""
    from ..files import atomic_folder, write_all

    with atomic_folder(folder) as tmp:
        write_all(tmp, adapter_files(weights, config))
    return Path(folder)
