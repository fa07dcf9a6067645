"""The memory of the methods that score text through the path evaluator (seq-path, the merges): a reservoir over
``(task, Example)`` pairs of the training split, each task's rows offered when the task ends."""
from __future__ import annotations

from ...evaluator.data import Example, Fields, load_split
from .protocol import TaskContext
from .replay import ReservoirBuffer


class ExampleReservoir(ReservoirBuffer):
    """The reservoir over ``(task, Example)`` pairs: the path evaluator scores text, not token ids."""

    @staticmethod
    def dump_item(item) -> list:
        task, example = item
        return [task, example.prompt, example.answer]

    @staticmethod
    def load_item(value: list):
        return value[0], Example(value[1], value[2])


def remember(buffer: ExampleReservoir, ctx: TaskContext) -> dict[str, list[Example]]:
    """Offer the task's training examples (the rows the run trained on) to the memory; the memory by task."""
    examples = load_split(dict(ctx.task_dirs)[ctx.task], "train", len(ctx.train),
                          fields=ctx.data_fields.get(ctx.task, Fields())) if ctx.train else []
    buffer.add((ctx.task, e) for e in examples)
    by_task: dict[str, list[Example]] = {}
    for task, example in buffer.items:
        by_task.setdefault(task, []).append(example)
    return {name: by_task[name] for name, _ in ctx.task_dirs if name in by_task}
