"""Which process this is under ``accelerate launch`` / torchrun, asked one way everywhere (accelerate's
``PartialState``): the other ranks compute, only the main one writes. A single process never touches accelerate's
process-wide state."""
from __future__ import annotations

import os


def launched() -> bool:
    """Whether this process is one of several started by ``accelerate launch`` / torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_process() -> bool:
    """False on the other ranks of a launch."""
    if not launched():
        return True
    import torch
    from accelerate import PartialState

    # the first PartialState fixes the backend for the process: gloo unless a GPU is there (evaluator.processes agrees)
    return PartialState(cpu=not torch.cuda.is_available()).is_main_process
