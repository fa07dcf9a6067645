"""The defaults of every hook a continual method has, and the helpers methods share.

A method is one small dataclass in a file of its own (mammoth's strategies without the import-time side effects):
its options are its fields declared with ``option.option(...)``, and it overrides only the hooks it changes of
``MethodBase``; ``protocol.Method`` is what the loop calls, ``registry.py`` lists the methods by name.
"""
from __future__ import annotations

import typing
from types import MappingProxyType
from typing import ClassVar, Mapping

import torch

from ...evaluator.data import Encoded
from ...evaluator.head import scored_nll
from ..adapter_io import FAST, save_peft_adapter
from .option import option_fields, option_type
from .protocol import Batch, Scorer, TaskContext


class MethodBase:
    """Every hook of ``protocol.Method`` with its default. Subclass it (as a dataclass) and override what changes."""

    name: ClassVar[str]
    # the peft adapter the trainer evaluates and saves as each task's checkpoint
    evaluated_adapter: ClassVar[str] = FAST
    # further adapters saved per task, label -> peft adapter name (I-LoRA's fast/ and slow/)
    saved_adapters: ClassVar[Mapping[str, str]] = MappingProxyType({})
    # trains once on all tasks together (multi-task): only the final row of its accuracy matrix means something
    joint: ClassVar[bool] = False
    # trains under several processes (DDP); the prompt methods change their trainable set per task, which DDP cannot
    distributed: ClassVar[bool] = True
    # why not, in the one line that refuses `accelerate launch` (a method with distributed = False)
    one_process_reason: ClassVar[str] = "what it trains changes from task to task, which DDP cannot follow"
    # what its per-task checkpoints are: "lora" (peft adapter folders the analysis side reads) or "prompt"
    checkpoint_kind: ClassVar[str] = "lora"

    def __post_init__(self) -> None:
        """Check every option against its declaration (type, choices, range), naming it in the message."""
        from ... import checks

        kinds = typing.get_type_hints(type(self))
        for f in option_fields(type(self)):
            meta, label, value = f.metadata, f"{self.name}: {f.name}", getattr(self, f.name)
            kind = option_type(kinds[f.name])
            if value is None and kind is not kinds[f.name]:  # an optional option left unset
                continue
            if meta["choices"] is not None:
                value = checks.choice(label, value, meta["choices"])
            elif kind is bool:
                if not isinstance(value, bool):
                    from ...errors import ConfigError

                    raise ConfigError(f"{label} must be true or false, got {value!r}")
            elif kind is int:
                value = checks.count(label, value, int(meta["low"] if meta["low"] is not None else 0),
                                     None if meta["high"] is None else int(meta["high"]))
            elif kind is float:
                value = checks.finite(label, value, meta["low"], meta["high"], high_open=meta["high_open"])
            setattr(self, f.name, value)

    @property
    def options(self) -> dict:
        """The method's resolved options, recorded with the run and checked when it is resumed."""
        return {f.name: getattr(self, f.name) for f in option_fields(type(self))}

    def train_set(self, seen: list[list[Encoded]], tasks: int) -> list[Encoded]:
        """The examples of the current task's epochs, given every task's so far (the current one last) and the
        stream's number of tasks."""
        return seen[-1]

    def begin_task(self, ctx: TaskContext) -> None:
        pass

    def training_step(self, model, batch: Batch) -> torch.Tensor:
        """The loss to minimise for one batch of the current task (default: its cross-entropy)."""
        return answer_loss(model, batch.inputs)

    def before_update(self, model) -> None:
        """After the step's backward passes, before clipping and the update: a method may rewrite the gradients
        (A-GEM, GEM project them)."""

    def after_step(self, model) -> None:
        pass

    def step_parts(self) -> dict[str, float]:
        """The parts of the last ``training_step``'s loss, for the training log (I-LoRA: its three terms)."""
        return {}

    def end_task(self, ctx: TaskContext) -> None:
        pass

    def setup(self, model, tasks: int, max_length: int) -> None:
        """Once per run, on the PeftModel before any DDP wrapping: a method may add the modules it trains (prompts)."""

    @property
    def other_learner(self) -> str | None:
        """An adapter scored on every task after each task beside the evaluated one (the dual-learner methods: the
        learner not evaluated), handed to ``note_other_scores``; None for most methods."""
        return None

    def note_other_scores(self, accuracy: list[float], rank: list[float] | None = None) -> None:
        """The other learner's accuracy (and rank accuracy, where recorded) on every task after the task just
        trained."""

    def evaluation_plan(self, trained: int, tasks: int) -> list:
        """A key per task, naming what the task is scored with after ``trained`` tasks (default: the evaluated adapter
        for all; before any training the initial adapter, i.e. the base model). Tasks sharing a key are scored together;
        per-task adapters (``one``) and prompts (Progressive Prompts) give different keys."""
        return [self.evaluated_adapter if trained else FAST] * tasks

    def evaluation_scorer(self, model, key) -> Scorer:
        """Make ``model`` score as ``key`` says (default: activate the adapter of that name)."""
        model.set_adapter(key)
        return Scorer(model)

    def restore_training(self, model) -> None:
        """After scoring: the adapter this method trains is active again and the only trainable one."""
        train_only(model, FAST)

    def save(self, model, folder) -> None:
        """The task's checkpoint: the evaluated adapter, as a plain peft adapter folder."""
        save_peft_adapter(model, self.evaluated_adapter, folder)

    def record(self) -> dict:
        """What the method wants in ``metrics.json`` beside the scores (seq-path: the t it chose per task)."""
        return {}

    @property
    def memory_examples(self) -> int | None:
        """Labelled training examples the method keeps in its memory at the end (``metrics.json``'s
        ``memory_examples``; per process under DDP): 0 for a method that keeps none, None for one that trains on all
        of them (the multi-task references)."""
        return 0

    def state(self) -> tuple[dict, dict]:
        """``(tensors, JSON-ready values)`` needed to resume mid-run."""
        return {}, {}

    def load_state(self, tensors: dict, meta: dict) -> None:
        pass


def train_only(model, adapter: str = FAST, active: tuple[str, ...] = ()) -> None:
    """Activate ``adapter`` of a PeftModel (with the frozen ``active`` ones beside it, their outputs summed) and make
    its LoRA weights the only trainable ones.

    peft's ``set_adapter`` re-enables gradients of whichever adapter it activates, so every switch ends here.
    """
    model = unwrap(model)
    if active:
        model.base_model.set_adapter([adapter, *active])  # LoraModel's form that takes several
    else:
        model.set_adapter(adapter)
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name and f".{adapter}." in name)


def trained_weight(name: str) -> bool:
    """The weights a run changes (saved in its state, checked for finiteness): every adapter's LoRA factors, and the
    prompt methods' ``modeconn_*`` tensors."""
    return "lora_" in name or "modeconn_" in name


def unwrap(model):
    """The PeftModel inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def labelled_nll(model, inputs: dict, **forward) -> tuple[torch.Tensor, torch.Tensor, object]:
    """Per-row summed NLL of the labelled next tokens, their count per row, and the model's output, whose ``logits``
    are ``[1, labelled tokens, vocab]``: the model's own forward (through ``model`` itself, so that a DDP wrapper still
    synchronises gradients; ``forward`` goes to it, e.g. ``output_hidden_states=True``) with its LM head applied at
    the labelled positions only (``evaluator/head.py``'s ``ScoredHead``, under whatever the model does around its
    head, such as Gemma-2's soft-cap).

    ``model(**inputs).loss`` projects every position onto the vocabulary, prompts and padding included: on
    SmolLM2-135M (49,152 tokens) that head, its backward and its cross-entropy were about a quarter of a step.
    """
    labels = inputs["labels"][:, 1:]
    keep = labels != -100
    rows, cols = keep.nonzero(as_tuple=True)
    per_row, out = scored_nll(unwrap(model), lambda: model(input_ids=inputs["input_ids"],
                                                           attention_mask=inputs["attention_mask"], **forward),
                              rows, cols, targets=labels[keep], n_rows=len(labels))
    return per_row, keep.sum(1), out


# the fixed cost of one more forward, in padded tokens, by device type: row_nll splits a batch by length only where
# the padding it saves outweighs it. On a CPU a step's cost follows its tokens, padding included, but a forward of few
# short rows runs the matrix products inefficiently (rows split two at a time ran the embedded tasks' short rows no
# faster than one forward). With 128, measured on SmolLM2-135M in bf16 against one forward: 0.54-0.79x the time on
# the standard-cl stream's batches (8 RTE rows; 8 current and 8 replayed rows of other tasks) and 0.66-0.78x on the
# embedded tasks' (16 gloss rows; 16 and 16 replayed news rows). A GPU is kept busy by the whole batch and was not
# measured: one forward there.
FORWARD_COST = {"cpu": 128}


def length_groups(lengths: list[int], cost: int) -> list[list[int]]:
    """Row indices in groups of consecutive lengths (sorted) that minimise Σ rows·longest + ``cost`` per group (exact,
    by dynamic programming over the sorted rows)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best, cut = [0] + [None] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            total = best[start] + (end - start) * lengths[order[end - 1]] + cost
            if best[end] is None or total < best[end]:
                best[end], cut[end] = total, start
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def row_nll(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``labelled_nll``'s per-row NLL and counts, the rows run in groups of similar length (``length_groups``), each
    cut to its longest row: a right-padded batch pads every row to the longest of all, and a replay batch mixes tasks
    whose prompts differ several-fold in length. A row's NLL does not depend on the other rows, so this is the same
    loss (to float rounding; dropout draws other masks) with fewer padded tokens. One forward where a DDP wrapper
    needs one forward per backward, or where the batch is not right-padded."""
    mask = inputs["attention_mask"]
    cost = FORWARD_COST.get(mask.device.type)
    lengths = mask.sum(1)
    one_forward = cost is None or model is not unwrap(model) or not bool((mask[:, 1:] <= mask[:, :-1]).all())
    groups = [list(range(len(lengths)))] if one_forward else length_groups(lengths.tolist(), cost)
    if len(groups) == 1:
        nll, count, _ = labelled_nll(model, inputs)
        return nll, count
    parts = []
    for group in groups:
        rows = torch.tensor(group, device=mask.device)
        width = int(lengths[rows].max())
        part = {key: inputs[key][rows, :width] for key in ("input_ids", "attention_mask", "labels")}
        parts.append(labelled_nll(model, part)[0])
    order = torch.tensor([row for group in groups for row in group], device=mask.device)
    return torch.cat(parts)[torch.argsort(order)], (inputs["labels"][:, 1:] != -100).sum(1)


def answer_loss(model, inputs: dict) -> torch.Tensor:
    """The mean NLL over the batch's labelled tokens, as transformers' ``ForCausalLMLoss`` computes it (float32
    logits, labels shifted by one, -100 ignored): ``model(**inputs).loss`` without the full head, and without most
    of the padding (``row_nll``)."""
    nll, count = row_nll(model, inputs)
    return nll.sum() / count.sum()


__all__ = ["MethodBase", "train_only", "trained_weight", "unwrap", "labelled_nll", "length_groups", "row_nll",
           "answer_loss", "FAST"]
