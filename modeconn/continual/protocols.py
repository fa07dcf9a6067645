"""Named experimental settings for `modeconn train --protocol NAME`: a task order, per-task metrics, which test rows,
and training settings, all of which the user's own flags and config file override. The run records the resolved
protocol (``made_by.settings.protocol``).

  trace     the I-LoRA paper's setting on a user's copy of TRACE + MedMCQA + JEC-QA laid out as LLMCL reads it
            (``<root>/<task>/{train,eval,test}.json`` of ``prompt`` / ``answer`` records): the order C-STANCE, FOMC,
            MeetingBank, ScienceQA, NumGLUE-cm, 20Minuten, MedMCQA, JEC-QA; the first 5,000 training rows; the last
            500 test rows; LLMCL's metrics (evaluation.py, utils/metrics.py); LoRA r 8, α 32, dropout 0.1 on
            q/k/v/o (utils/arg_configs.py); 3 epochs, batch 1, lr 1e-5, constant with 500 warm-up steps per task,
            max length 1024 (scripts/train_seq.sh)
  standard-cl  O-LoRA's CL benchmark (github.com/cmnfriend/O-LoRA) on a user's copy of its layout, read as it is
            (``evaluator.standard_cl``: its prompts, labels.json as the answer space, an eval split carved from
            train.json). ``--tasks`` is the folder holding ``CL_Benchmark/`` and ``configs/`` (or ``CL_Benchmark/``);
            tasks are found under any family. ``--order`` names one of O-LoRA's orders (order1 by default; order1-3:
            scripts/order_1.sh:17,53,89,125, order_2.sh and order_3.sh at the same lines; long: scripts/long.sh:17,
            53, …, 521, every 36 lines) or lists task names. Every task is scored by ``olora_exact_match``
            (src/compute_metrics.py) on all of test.json (src/uie_dataset_lora.py:229). Settings of
            scripts/order_1.sh: lr 1e-3 (:24), 1 epoch (:25), constant schedule without warm-up (:35-36), batch 8 per
            device on 8 GPUs (:11,21: batch 8, 8 gradient-accumulation steps here), every training row ("sampling
            strategy": "full" in configs/order1_configs/*/train_tasks.json; uie_dataset_lora.py:257-259), max length
            562 (max_source_length 512 + max_target_length 50, :28-29; the training limit of uie_collator.py:139);
            LoRA r 8, α 32, dropout 0.1 on peft's default targets (src/run_uie_lora.py:116,381). Not reproduced:
            O-LoRA's orthogonality and L2 losses (--lamda_1 0.5, --lamda_2 0, :42-43) belong to ``--method olora``;
            its base is T5-large (:15), an encoder-decoder, where modeconn trains decoder-only models, whose path in
            O-LoRA is the one the prompts follow; long.sh trains MNLI for 2 epochs (:97), one epochs value serves
            every task here; greedy generation stops at 50 new tokens there (:30), at modeconn's decoding limit here.
  embedded  the embedded four-task stream and the settings of benchmarks/continual.py
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

TRACE_ORDER = ("C-STANCE", "FOMC", "MeetingBank", "ScienceQA", "NumGLUE-cm", "20Minuten", "MedMCQA", "JEC-QA")
# folder names LLMCL's own code uses for the two added tasks (evaluation.py's EVAL_FUNCs keys)
TRACE_ALIASES = {"MedMCQA": ("medmcqa",), "JEC-QA": ("jecqa", "JECQA")}
TRACE_METRICS = {"C-STANCE": "trace_choice", "FOMC": "trace_choice", "MeetingBank": "rouge_l",
                 "ScienceQA": "trace_scienceqa", "NumGLUE-cm": "trace_number", "20Minuten": "sari",
                 "MedMCQA": "trace_choice", "JEC-QA": "trace_choice"}
TRACE_TRAIN_ROWS, TRACE_TEST_ROWS, TRACE_EPOCHS, TRACE_WARMUP_STEPS = 5000, 500, 3, 500

# O-LoRA's task orders: the --task_config_dir of each run of scripts/order_1.sh, order_2.sh, order_3.sh, long.sh
STANDARD_CL_ORDERS = {
    "order1": ("dbpedia", "amazon", "yahoo", "agnews"),
    "order2": ("dbpedia", "amazon", "agnews", "yahoo"),
    "order3": ("yahoo", "amazon", "agnews", "dbpedia"),
    "long": ("yelp", "amazon", "MNLI", "CB", "COPA", "QQP", "RTE", "IMDB", "SST-2", "dbpedia", "agnews", "yahoo",
             "MultiRC", "BoolQA", "WiC"),
}
STANDARD_CL_METRIC = "olora_exact_match"


@dataclass(frozen=True)
class Protocol:
    name: str
    order: tuple[str, ...]
    metrics: dict[str, str]
    settings: dict  # TrainConfig and run keys, as in a config file
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    orders: dict[str, tuple[str, ...]] = field(default_factory=dict)  # named orders (--order NAME): standard-cl's
    metric: str | None = None  # every task's metric where ``metrics`` names none

    def record(self, used: dict, tasks: list[tuple[str, Path]], metrics: dict[str, str]) -> dict:
        """What a run records of its protocol: the preset, the keys the user changed, the task order and metrics."""
        def same(a, b):
            join = lambda v: ",".join(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
            return join(a) == join(b)

        changed = sorted(k for k, v in used.items() if k in self.settings and not same(v, self.settings[k]))
        given = used.get("order")
        given = given[0] if isinstance(given, list) and len(given) == 1 else given
        named = given if isinstance(given, str) and given in self.orders else None
        return {"name": self.name, "preset": dict(self.settings), "overridden": changed, "order": [t for t, _ in tasks],
                "metrics": dict(metrics),
                **({"order_name": named or (None if given else next(iter(self.orders)))} if self.orders else {})}

    def task_metrics(self, tasks: list[tuple[str, Path]]) -> dict[str, str]:
        """Each task's metric under this protocol (tasks it does not name: its ``metric``, else left out)."""
        return {t: self.metrics.get(t, self.metric) for t, _ in tasks if self.metrics.get(t, self.metric)}

    def cl_benchmark_folders(self, root: Path, order: list[str] | None) -> list[tuple[str, Path]]:
        """standard-cl: ``(task, folder)`` in ``order`` (a named order's one name, task names, or None: the default),
        found under any family; every missing or incomplete task named in one line, with the --order of those present."""
        from .. import checks
        from ..evaluator.standard_cl import find_tasks, missing_parts

        named = order[0] if order and len(order) == 1 and order[0] in self.orders else None
        wanted = self.orders[named] if named else tuple(order or self.order)
        checks.unique("order: task", list(wanted))
        found = find_tasks(root)
        lacking = {t: ["no folder"] if t not in found else [f"no {p}" for p in missing_parts(found[t])] for t in wanted}
        lacking = {t: parts for t, parts in lacking.items() if parts}
        if lacking:
            present = [t for t in wanted if t not in lacking]
            what = "; ".join(f"{t} ({', '.join(parts)})" for t, parts in lacking.items())
            fix = f"run the tasks present with --order {','.join(present)}" if present else "no task of it is present"
            which = named or ("the --order given" if order else next(iter(self.orders)))
            raise DataError(f"--protocol {self.name}: {len(lacking)} task(s) of {which} missing or "
                            f"incomplete under {root}: {what}; {fix}")
        return [(t, found[t]) for t in wanted]

    def task_folders(self, root: Path) -> list[tuple[str, Path]]:
        """``(task, folder)`` in the protocol's order; every missing task named in one line."""
        if not root.is_dir():
            raise DataError(f"--protocol {self.name}: {root} is not a folder of task folders")
        found, missing = [], []
        for task in self.order:
            folder = next((root / n for n in (task, *self.aliases.get(task, ())) if (root / n).is_dir()), None)
            if folder is None:
                missing.append(task)
            else:
                found.append((task, folder))
        if missing:
            raise DataError(f"--protocol {self.name}: {len(missing)} task folder(s) missing under {root}: "
                            f"{', '.join(missing)} (each <root>/<task>/ with train.json and test.json)")
        return found


def _trace() -> Protocol:
    return Protocol("trace", TRACE_ORDER, dict(TRACE_METRICS), {
        "max_train": TRACE_TRAIN_ROWS, "eval_limit": TRACE_TEST_ROWS, "eval_rows": "last",
        "rank": 8, "alpha": 32, "dropout": 0.1, "target_modules": "q_proj,k_proj,v_proj,o_proj",
        "epochs": TRACE_EPOCHS, "batch_size": 1, "lr": 1e-5, "lr_scheduler": "constant",
        "warmup_ratio": TRACE_WARMUP_STEPS / (TRACE_TRAIN_ROWS * TRACE_EPOCHS), "schedule_scope": "task",
        "max_length": 1024}, aliases=dict(TRACE_ALIASES))


def _embedded() -> Protocol:
    from .config import EMBEDDED_TRAINING

    training = {**EMBEDDED_TRAINING, "target_modules": ",".join(EMBEDDED_TRAINING["target_modules"])}
    return Protocol("embedded", ("news", "gloss", "fortune", "stdlib"), {},
                    {"base": "tiny-llama", "max_train": 200, "eval_limit": 100, "epochs": 3, **training})


def _standard_cl() -> Protocol:
    return Protocol("standard-cl", STANDARD_CL_ORDERS["order1"], {}, {
        "rank": 8, "alpha": 32, "dropout": 0.1, "epochs": 1, "batch_size": 8, "grad_accum": 8, "lr": 1e-3,
        "lr_scheduler": "constant", "warmup_ratio": 0.0, "schedule_scope": "task", "max_length": 512 + 50},
        orders=dict(STANDARD_CL_ORDERS), metric=STANDARD_CL_METRIC)


PROTOCOLS = {"trace": _trace, "standard-cl": _standard_cl, "embedded": _embedded}


def get_protocol(name: str) -> Protocol:
    from .. import checks

    checks.choice("protocol", name, sorted(PROTOCOLS))
    return PROTOCOLS[name]()


def default_tasks(protocol: Protocol) -> str | None:
    """Where the protocol's tasks are when ``--tasks`` is not given (the embedded data; TRACE must be named)."""
    if protocol.name == "embedded":
        from ..evaluator.models import checkpoints_dir

        return str(checkpoints_dir() / "data")
    return None
