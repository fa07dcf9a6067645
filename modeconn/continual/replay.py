"""A reservoir buffer of past examples: every example offered so far is kept with equal probability, never over its
size, and the replay methods that own one. Each training example is offered once per task (in the task's first
epoch): a buffer of 40 over a stream of 1,600 holds a uniform 2.5% sample of it (``tests/continual/test_methods.py``
checks the uniformity with a chi-square test)."""
from __future__ import annotations

import random
from dataclasses import dataclass

from .methods import option


class ReservoirBuffer:
    """Algorithm R (Vitter, 1985): the n-th item offered replaces a random slot with probability size / n."""

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
        """JSON-ready state: examples as ``[ids, n_prompt]``, the sampler's RNG state as lists."""
        version, internal, gauss = self._rng.getstate()
        return {"size": self.size, "items": [[list(e.ids), e.n_prompt] for e in self.items], "seen": self.seen,
                "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict) -> None:
        from ..evaluator.data import Encoded

        self.size, self.seen = state["size"], state["seen"]
        self.items = [Encoded(tuple(ids), n) for ids, n in state["items"]]
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))


def resolved_size(size: int, fraction: float | None, stream_examples: int) -> int:
    """The buffer's size: ``fraction`` of the stream's examples when given (at least one), else ``size``."""
    return max(1, round(fraction * stream_examples)) if fraction is not None else size


@dataclass
class ReplayState:
    """The replay methods' shared part: the buffer's options (declared once, first among the method's options), its
    sizing at the first task, and the resumable state of the ``buffer`` (and of a ``slow`` learner, if there is one)."""

    buffer_size: int = option(500, "replay buffer size (examples kept from the stream)", low=1)
    buffer_fraction: float | None = option(None, "buffer size as a fraction of the stream's training examples "
                                                 "(the I-LoRA paper: 500 of 20,000 = 0.025); overrides buffer_size",
                                           low=0, high=1)

    def size_buffer(self, stream_examples: int) -> None:
        """Fix the buffer's size before the stream's first example reaches it (a resumed buffer keeps its own)."""
        if self.buffer.seen == 0:
            self.buffer.size = resolved_size(self.buffer_size, self.buffer_fraction, stream_examples)

    def state(self) -> tuple[dict, dict]:
        slow = getattr(self, "slow", None)
        return {}, {"buffer": self.buffer.state_dict(), **({"step": slow.step} if slow is not None else {}),
                    **({"other_rows": self.other_rows} if hasattr(self, "other_rows") else {})}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.buffer.load_state_dict(meta["buffer"])
        if "step" in meta:
            self.slow.step = meta["step"]
        if "other_rows" in meta:
            self.other_rows = [list(row) for row in meta["other_rows"]]
