"""Everything a training run sets up before its loop: processes, the resume check, the base model with a fresh LoRA,
the tokenised tasks, the evaluation settings, and the state to continue from (torchtune's recipe ``setup``)."""
from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..evaluator.data import Encoded, Example, Fields, collate, encode_counted, read_split, resolve_max_length
from ..evaluator.evaluate import DTYPES, EvalConfig, evaluate_model
from ..evaluator.models import load_base
from ..evaluator.scoring import get_scorer
from ..evaluator.standard_cl import carve_records
from .config import TrainConfig
from .methods.base import FAST
from .methods.protocol import Method
from .metrics import ContinualMetrics
from .request import TrainRequest
from .run_folder import RunFolder
from .state import RunState, read_state


@dataclass
class Prepared:
    """A run ready for its loop. ``trained`` is the model the steps call (DDP-wrapped with several processes)."""

    accelerator: object
    request: TrainRequest  # what is trained, with its config resolved
    model: object  # the PeftModel
    trained: object
    tokenizer: object
    tasks: list[tuple[str, Path]]
    train_sets: list[list[Encoded]]
    tests: dict[str, list[Example]]
    metrics_by_task: dict[str, str]
    eval_config: EvalConfig
    generator: torch.Generator
    run: RunState
    metrics: ContinualMetrics
    resume_from: tuple | None  # (optimizer meta, tensors) of a saved state, until the loop restores it
    max_length: int = 0  # the input length used (the config's, or the shared default capped by the base's positions)
    device: torch.device = torch.device("cpu")  # where the model and its batches live
    data_fields: dict | None = None  # task → the record fields its prompt and answer were read from
    cut_prompts: dict | None = None  # task → prompts cut from the left to fit max_length, per split (tasks with any)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    def to_device(self, examples: list[Encoded]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in collate(examples, self.tokenizer.pad_token_id).items()}

    def scores(self, method: Method, trained: int, key=None) -> tuple[list[float], list[float], list[float] | None]:
        """Accuracy, loss and rank-classification accuracy (None unless every task's examples carry their choices) on
        every task's evaluation split, each task scored by the model the method evaluates it with after ``trained``
        tasks (or all by ``key``); then the method's trained adapter is the only trainable one again."""
        names = list(self.tests)
        plan = [key] * len(names) if key is not None else method.evaluation_plan(trained, len(names))
        curves = {}
        for key in dict.fromkeys(plan):  # each distinct key once, on the tasks it scores
            scorer = method.evaluation_scorer(self.model, key)
            tasks = {n: self.tests[n] for n, k in zip(names, plan) if k == key}
            curves.update(evaluate_model(scorer.model, self.tokenizer, tasks, self.eval_config,
                                         metrics=self.metrics_by_task, transform=scorer.transform))
        method.restore_training(self.model)
        rank = [curves[n].rank_accuracy[0] for n in names if curves[n].rank_accuracy is not None]
        return ([curves[n].accuracy[0] for n in names], [curves[n].loss[0] for n in names],
                rank if len(rank) == len(names) else None)


def fingerprint(request: TrainRequest, processes: int) -> dict:
    """What must match for ``resume``: base, tasks, method and its options, training settings, evaluation, processes
    (and the protocol the settings came from, recorded with the run), and the data fields named per task."""
    r = request
    return {"base": r.base, "tasks": [[t, str(Path(f).resolve())] for t, f in r.tasks], "method": r.method.name,
            "options": r.method.options, "config": r.config.to_json(), "eval_split": r.eval_split,
            "eval_limit": r.eval_limit, "eval_rows": r.eval_rows, "processes": processes, "protocol": r.protocol,
            "data_fields": {task: f.to_json() for task, f in r.data_fields.items()} if r.data_fields else None,
            **({"eval_carve": carves} if (carves := carve_records(r.tasks)) else {})}


def linear_modules(model) -> list[str]:
    """The short names of the model's linear layers that LoRA can adapt (the LM head excluded)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"}
    head = model.get_output_embeddings()
    head_name = next((n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is head), None)
    return sorted(names - {head_name})


# peft refuses LoRA on these in Mamba-style blocks (peft/tuners/tuners_utils.py, _check_lora_target_modules_mamba)
MAMBA_TYPES = {"falcon_h1", "mamba", "mamba2", "falcon_mamba", "nemotron_h"}
MAMBA_INCOMPATIBLE = {"out_proj", "conv1d"}
_EXPERTS = re.compile(r"(^|\.)(experts|block_sparse_moe)(\.|$)")


def _unusable(model) -> dict[str, str]:
    """Short names of linear layers a LoRA run cannot use on this base, each with the reason."""
    out = {}
    for name, module in model.named_modules():
        short = name.rsplit(".", 1)[-1]
        if "Router" in type(module).__name__:
            out[short] = "a mixture-of-experts router, returning a tuple peft cannot add to"
        elif _EXPERTS.search(name) and (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"):
            out[short] = "inside mixture-of-experts experts, whose routed tokens cannot carry path points"
        elif isinstance(module, torch.nn.Linear) and any("router" in part for part in name.split(".")[:-1]):
            out[short] = "the gate of a mixture-of-experts router, which peft adapts as a bare parameter"
        if short == "dt_proj":
            out[short] = "read directly by the Mamba mixer (dt_proj.weight @ x), so a LoRA term there is never applied"
    if model.config.model_type in MAMBA_TYPES:
        out.update(dict.fromkeys(MAMBA_INCOMPATIBLE, "refused by peft in Mamba-style blocks"))
    return out


def usable_modules(model) -> list[str]:
    """The short names of the linear layers a LoRA run can train and the evaluator can analyse on this base: not a
    name peft would also match elsewhere (matching is by suffix: CTRL's ``0`` names whole layers too; fused expert
    weights share ``down_proj``), nor one of ``_unusable``."""
    unusable = _unusable(model)
    linear = lambda m: isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"  # noqa: E731
    elsewhere = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not linear(m)}
    fused = set()  # expert weights stored fused as 3-D parameters: peft maps gate_proj and up_proj to gate_up_proj
    for name, param in model.named_parameters():
        if param.dim() == 3:
            short = name.rsplit(".", 1)[-1]
            fused |= {short, *(f"{part}_proj" for part in short.removesuffix("_proj").split("_"))}
    return [n for n in linear_modules(model) if n not in unusable and n not in elsewhere and n not in fused]


def _has_fused_experts(model) -> bool:
    """Experts stored as 3-D parameters (transformers ≥ 5): peft's all-linear wraps them in ParamWrapper."""
    return any(p.dim() == 3 for p in model.parameters())


def lora_targets(model, config: TrainConfig) -> str | list[str]:
    """The ``target_modules`` handed to peft: the user's, or peft's default for this architecture; refused in one
    line, with a list that works, where peft would fail or the trained adapter could not be analysed."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    linear, unusable, usable = linear_modules(model), _unusable(model), usable_modules(model)
    if not usable:
        raise ConfigError(f"this base ({model.config.model_type}) has no linear layer a LoRA run can adapt")
    instead = f"pass target_modules (--target-modules) from: {','.join(usable)}"
    names = [name for name, _ in model.named_modules()]
    if config.target_modules is None:
        defaults = [t for t in DEFAULTS.get(model.config.model_type, ()) if t in usable]
        if not defaults:
            safe = not any(n in linear for n in unusable) and not _has_fused_experts(model)
            raise ConfigError(f"peft has no default LoRA targets for {model.config.model_type} that fit this base; "
                              f"{instead}{' (or all-linear)' if safe else ''}")
        return defaults  # named, not left to peft's own look-up, which misses some (Mixtral's)
    if config.target_modules == ("all-linear",):
        skipped = [n for n in sorted(unusable) if n in linear] + (["experts"] if _has_fused_experts(model) else [])
        if skipped:
            why = unusable.get(skipped[0], "mixture-of-experts experts, whose routed tokens cannot carry path points")
            raise ConfigError(f"all-linear on this base ({model.config.model_type}) would adapt {skipped[0]} ({why}); "
                              f"{instead}")
        return "all-linear"
    missing = [t for t in config.target_modules if not any(n == t or n.endswith("." + t) for n in names)]  # peft's rule
    if missing:
        raise ConfigError(f"target_modules {missing} are not modules of this base model; {instead}")
    refused = [t for t in config.target_modules if t in unusable]
    if refused:
        raise ConfigError(f"target_modules: {refused[0]} is {unusable[refused[0]]}; {instead}")
    not_linear = [t for t in config.target_modules if t not in linear]
    if not_linear:
        raise ConfigError(f"target_modules {not_linear} are not linear layers (LoRA here trains linear layers only); "
                          f"{instead}")
    return list(config.target_modules)


def run_device(accelerator, requested: str) -> torch.device:
    """One process: the device asked for (``cuda:1`` too); several: each process's own, as accelerate assigns it."""
    return torch.device(requested) if accelerator.num_processes == 1 else accelerator.device


def prepare(accelerator, request: TrainRequest, folder: RunFolder, *, resume: bool = False,
            allow_pickle: bool = False) -> Prepared:
    """Set the run up; draws from the global RNG in a fixed order (the base, then the LoRA initialisation)."""
    from peft import LoraConfig, get_peft_model

    base, tasks, method, config = request.base, request.tasks, request.method, request.config
    eval_split, eval_limit, metrics_by_task = request.eval_split, request.eval_limit, request.metrics
    for metric in metrics_by_task.values():
        get_scorer(metric)
    prints = fingerprint(request, accelerator.num_processes)
    previous = read_state(folder.out) if resume else None
    if previous is not None and previous[0].fingerprint != prints:
        changed = sorted(k for k in prints if previous[0].fingerprint.get(k) != prints[k])
        raise ConfigError(f"resume: the run in {folder.out} was made with other settings ({', '.join(changed)} differ); "
                          "repeat its command or choose another output folder")
    where = run_device(accelerator, request.device)
    engine = str(accelerator.distributed_type).rsplit(".", 1)[-1]
    if engine in ("FSDP", "DEEPSPEED", "MEGATRON_LM", "XLA"):
        raise ConfigError(f"modeconn train runs one process or DDP over several (CPUs or GPUs); {engine} is not supported "
                          "yet: launch with a DDP config (configs/accelerate/gpus_ddp.yaml)")
    if accelerator.num_processes > 1 and not method.distributed:
        raise ConfigError(f"method {method.name} trains in one process: {method.one_process_reason}; launch it without "
                          "accelerate")
    model, tokenizer = load_base(base, device=where, dtype=DTYPES[config.dtype], allow_pickle=allow_pickle)
    targets = lora_targets(model, config)
    max_length = resolve_max_length(model, config.max_length)
    named = request.data_fields or {}
    read = {task: read_split(path, "train", config.max_train, fields=named.get(task, Fields())) for task, path in tasks}
    counted = {task: encode_counted(tokenizer, read[task][0], max_length) for task, _ in tasks}
    train_sets = [counted[task][0] for task, _ in tasks]
    tests = {task: read_split(path, eval_split, eval_limit, rows=request.eval_rows, fields=named.get(task, Fields()))[0]
             for task, path in tasks}
    cut = {task: {"train": counted[task][1], eval_split: encode_counted(tokenizer, tests[task], max_length)[1]}
           for task, _ in tasks}
    cut = {task: n for task, n in cut.items() if any(n.values())}
    if cut and accelerator.is_main_process:
        print("modeconn: prompts cut from the left to fit max_length: " + ", ".join(
            f"{task} {n['train']} train, {n[eval_split]} {eval_split}" for task, n in cut.items()), file=sys.stderr)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets,
                      task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing (a FutureWarning)
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing", category=FutureWarning)
        model = get_peft_model(model, lora)  # LoRA weights in float32 whatever the base's dtype (peft's adapter autocast)
    model.peft_config[FAST].base_model_name_or_path = base  # the name the run was given ('tiny-llama'), not its folder
    if config.gradient_checkpointing:
        lm = model.get_base_model()
        if hasattr(lm, "activation_checkpointing_enable"):  # transformers ≥ 5.x's name
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # the hook peft needs: the frozen embeddings' output must carry gradients
    method.setup(model, len(tasks), max_length)
    trained = accelerator.prepare_model(model) if accelerator.num_processes > 1 else model  # DDP: forwards sync gradients
    metrics = ContinualMetrics([t for t, _ in tasks], split=eval_split, joint=method.joint,
                               eval_examples=[len(tests[t]) for t, _ in tasks])
    prepared = Prepared(accelerator, request, model=model, trained=trained, tokenizer=tokenizer, tasks=tasks,
                        train_sets=train_sets, tests=tests, metrics_by_task=metrics_by_task,
                        eval_config=EvalConfig(max_length=max_length, progress=False),
                        generator=torch.Generator().manual_seed(config.seed), run=RunState(prints), metrics=metrics,
                        resume_from=None, max_length=max_length, device=where,
                        data_fields={task: read[task][1] for task, _ in tasks}, cut_prompts=cut)
    if previous is not None:
        prepared.run, prepared.resume_from = previous[0], previous[1:]
        prepared.metrics = ContinualMetrics(**prepared.run.metrics)
        if accelerator.is_main_process:
            folder.trim_log(prepared.run.global_step)
    else:
        (prepared.metrics.initial_accuracy, prepared.metrics.initial_loss,
         prepared.metrics.initial_rank_accuracy) = prepared.scores(method, 0)
    return prepared
