"""A reservoir buffer of past examples: every example offered so far is kept with equal probability, never over its
size, and the replay methods that own one. Each training example is offered once per task (in the task's first
epoch): a buffer of 40 over a stream of 1,600 holds a uniform 2.5% sample of it (``tests/continual/test_methods.py``
checks the uniformity with a chi-square test).

One memory budget: every method that keeps labelled examples of past tasks (er, ilora, sure, agem, gem, seq-path)
sizes its memory from the same two options (``MemoryBudget``), drawn from the training split, and reports what it kept
as ``memory_examples`` in ``metrics.json``."""
from __future__ import annotations

import random
from dataclasses import dataclass

from .buffer_state import dump_example, dump_rng, load_example, load_rng
from .option import option


class ReservoirBuffer:
    """Algorithm R (Vitter, 1985): the n-th item offered replaces a random slot with probability size / n."""

    dump_item = staticmethod(dump_example)  # an item as JSON (seq-path's reservoir keeps text, not token ids)
    load_item = staticmethod(load_example)

    def __init__(self, size: int, seed: int = 0):
        self.size, self.items, self.seen = size, [], 0
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, items) -> None:
        for item in items:
            self.seen += 1
            if len(self.items) < self.size:
                self.items.append(item)
            else:
                j = self._rng.randrange(self.seen)
                if j < self.size:
                    self.items[j] = item

    def sample(self, k: int) -> list:
        return self._rng.sample(self.items, min(k, len(self.items)))

    def state_dict(self) -> dict:
        """JSON-ready state: the items and the sampler's RNG state (``buffer_state``)."""
        return {"size": self.size, "items": [self.dump_item(e) for e in self.items], "seen": self.seen,
                "rng": dump_rng(self._rng)}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.seen = state["size"], state["seen"]
        self.items = [self.load_item(value) for value in state["items"]]
        load_rng(self._rng, state["rng"])

def resolved_size(size: int, fraction: float | None, stream_examples: int) -> int:
    """The buffer's size: ``fraction`` of the stream's examples when given (at least one), else ``size``."""
    return max(1, round(fraction * stream_examples)) if fraction is not None else size


@dataclass
class MemoryBudget:
    """The memory options every method that keeps labelled past examples shares (declared once, first among the
    method's options): one size M for all of them, so that a comparison spends the same memory."""

    buffer_size: int = option(500, "memory size M: labelled training examples kept from the stream (the replay buffer; "
                                   "A-GEM/GEM's episodic memory; seq-path's fitting and picking set)", low=1)
    buffer_fraction: float | None = option(None, "memory size as a fraction of the stream's training examples "
                                                 "(the I-LoRA paper: 500 of 20,000 = 0.025); overrides buffer_size",
                                           low=0, high=1)

    def memory_size(self, stream_examples: int) -> int:
        return resolved_size(self.buffer_size, self.buffer_fraction, stream_examples)

    def size_buffer(self, stream_examples: int) -> None:
        """Fix the buffer's size before the stream's first example reaches it (a resumed buffer keeps its own)."""
        if self.buffer.seen == 0:
            self.buffer.size = self.memory_size(stream_examples)

    @property
    def memory_examples(self) -> int:
        return len(self.buffer)


@dataclass
class ReplayState(MemoryBudget):
    """The replay methods' shared part: the memory options, whether the first task replays, the buffer's sizing at
    the first task, and the resumable state of the ``buffer``."""

    replay_first_task: bool = option(False, "replay (and I-LoRA's consistency loss) in the first task too, from a "
                                            "buffer of that task's own examples; off by default, as LLMCL "
                                            "(method/ER.py:121-123, method/ILORA.py:224-225)")

    def replays(self, task_index: int) -> bool:
        """Whether task ``task_index`` (0 first) draws replay batches."""
        return task_index > 0 or self.replay_first_task

    def state(self) -> tuple[dict, dict]:
        return {}, {"buffer": self.buffer.state_dict()}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.buffer.load_state_dict(meta["buffer"])
