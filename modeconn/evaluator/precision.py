"""``auto`` precision: bfloat16 where the device multiplies it fast (CUDA with bf16, a CPU with AVX512-BF16 or AMX),
else float32, so a result records the precision it was actually computed in."""
from __future__ import annotations

import torch


def cpu_bf16_fast() -> bool:
    """Whether this CPU has bf16 dot-product instructions (oneDNN then runs bf16 matmuls about 4× float32's rate).

    ``torch.backends.cpu.get_cpu_capability()`` names only the vector width ("AVX512" on a CPU with AVX512-BF16 too),
    so torch's per-feature probes decide; a future capability string naming BF16 or AMX is taken at its word."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "BF16" in capability or "AMX" in capability:
        return True
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and bool(probe()) for probe in probes)


def bf16_fast(device: str | torch.device) -> bool:
    """Whether ``device`` (cpu, cuda, cuda:N, …) runs bf16 matmuls faster than float32."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return kind == "cpu" and cpu_bf16_fast()


def resolve_dtype(name: str, device: str | torch.device) -> str:
    """The analysis ``--dtype``: ``auto`` becomes ``bfloat16`` or ``float32`` for ``device``; others stay as given."""
    if name != "auto":
        return name
    return "bfloat16" if bf16_fast(device) else "float32"


def resolve_precision(name: str, device: str | torch.device) -> str:
    """The training ``--precision``: ``auto`` becomes ``bf16`` or ``fp32`` for ``device``; others stay as given."""
    if name != "auto":
        return name
    return "bf16" if bf16_fast(device) else "fp32"
