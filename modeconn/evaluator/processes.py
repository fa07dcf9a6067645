"""Several processes on one analysis (``accelerate launch -m modeconn barrier …``): who this process is, which share
of the work is its own, and gathering everyone's share back in order. One process is the trivial case."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> list[int]:
        """This process's items of ``range(n)``: contiguous blocks, sizes differing by at most one."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return list(range(start, start + base + (self.rank < extra)))

    def gather(self, part: list) -> list:
        """Every process's ``part`` of a ``share``, concatenated in rank order (so in the original item order)."""
        if self.world == 1:
            return list(part)
        import torch.distributed as dist

        parts = [None] * self.world
        dist.all_gather_object(parts, part)
        return [item for piece in parts for item in piece]


def processes(device: str = "cpu") -> tuple[Processes, str]:
    """The processes of this run and the device this one should use. Under ``accelerate launch`` / torchrun (``WORLD_SIZE``
    above 1) the process group is set up by accelerate (gloo on CPUs, NCCL on GPUs) and each process takes its local
    GPU when ``device`` is ``cuda``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes(), device
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    if device == "cuda":
        device = str(state.device)
    return Processes(state.process_index, state.num_processes), device
