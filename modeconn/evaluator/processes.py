"""Several processes on one analysis (``accelerate launch -m modeconn barrier …``): who this process is, which share
of the work is its own, and gathering everyone's share back in order, all through accelerate's ``PartialState``.
One process is the trivial case and never touches accelerate's process-wide state."""
from __future__ import annotations

from dataclasses import dataclass

from ..ranks import launched


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> list[int]:
        """This process's items of ``range(n)``: contiguous blocks, sizes differing by at most one (accelerate's
        ``split_between_processes``)."""
        if self.world == 1:
            return list(range(n))
        from accelerate import PartialState

        with PartialState().split_between_processes(list(range(n))) as mine:
            return list(mine)

    def gather(self, part: list) -> list:
        """Every process's ``part`` of a ``share``, concatenated in rank order (so in the original item order)."""
        if self.world == 1:
            return list(part)
        from accelerate.utils import gather_object

        return list(gather_object(list(part)))


def processes(device: str = "cpu") -> tuple[Processes, str]:
    """The processes of this run and the device this one should use. Under ``accelerate launch`` / torchrun (``WORLD_SIZE``
    above 1) the process group is set up by accelerate (gloo on CPUs, NCCL on GPUs) and each process takes its local
    GPU when ``device`` is ``cuda``."""
    if not launched():
        return Processes(), device
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    if device == "cuda":
        device = str(state.device)
    return Processes(state.process_index, state.num_processes), device
