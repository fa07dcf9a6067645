"""Turning `modeconn train` flags and an optional YAML/JSON config file into a TrainConfig, method options and tasks.

The method options are not listed here: they come from the methods' own declarations (``registry.declared_options``).
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from .. import checks
from ..errors import ConfigError, DataError
from ..evaluator.data import Fields, split_file
from ..lora.sequence import MANIFEST, load_sequence
from .config import TrainConfig
from .methods.registry import declared_options
from .old_names import OLD_KEYS, new_keys
from .request import DEFAULT_METHOD, EVAL_ROWS, EVAL_SPLITS, TRACKERS, TrainRequest, default

# the settings of a run that are neither TrainConfig's nor a method's; the request's defaults are read from its fields
RUN_DEFAULTS = {"method": DEFAULT_METHOD, "tasks": None, "order": None, "base": None,
                **{key: default(key) for key in ("eval_split", "eval_limit", "eval_rows", "device", "report_to")},
                "protocol": None, "prompt_field": None, "answer_field": None}


def read_config_file(path: str | None) -> dict:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.load(p.read_text(), Loader=_unique_keys_loader())  # a SafeLoader that refuses repeated keys
        else:
            data = checks.load_json_text(p.read_text())
    except (checks.JSONShapeError, ConfigError) as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"{p}: not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'} ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of option names to values")
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in values:
            raise ConfigError(f"{p}: option {name!r} is given twice (one value would silently replace the other)")
        values[name] = value
    return values


def _unique_keys_loader():
    """PyYAML's SafeLoader, refusing a key repeated in one mapping (plain YAML keeps the last one silently)."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if (key.tag, key.value) in seen:
                        raise ConfigError(f"key {key.value!r} appears twice (line {key.start_mark.line + 1}; one value "
                                          "would silently replace the other)")
                    seen.add((key.tag, key.value))
            return super().construct_mapping(node, deep)

    return UniqueKeys


def _run_settings(values: dict) -> dict:
    """The run keys, checked: method, tasks, order, base, eval_split, eval_limit, device."""
    from .methods.registry import METHODS

    out = {**RUN_DEFAULTS, **{k: v for k, v in values.items() if k in RUN_DEFAULTS}}
    checks.choice("method", out["method"], sorted(METHODS))
    for key in ("tasks", "base"):
        if out[key] is not None and (not isinstance(out[key], str) or not out[key]):
            raise ConfigError(f"{key} must be a path or name, got {out[key]!r}")
    order = out["order"]
    if isinstance(order, str):
        order = [n.strip() for n in order.split(",") if n.strip()]
    if order is not None and (not isinstance(order, list) or not all(isinstance(n, str) for n in order)):
        raise ConfigError(f"order must be task names, got {out['order']!r}")
    out["order"] = order
    checks.choice("eval_split", out["eval_split"], EVAL_SPLITS)
    checks.choice("eval_rows", out["eval_rows"], EVAL_ROWS)
    if out["protocol"] is not None:
        from .protocols import PROTOCOLS

        checks.choice("protocol", out["protocol"], sorted(PROTOCOLS))
    out["eval_limit"] = checks.optional_count("eval_limit", out["eval_limit"])
    out["device"] = checks.device("device", out["device"])
    checks.choice("report_to", out["report_to"], TRACKERS)
    Fields(out["prompt_field"], out["answer_field"])
    return out


def _settings(method: str, values: dict) -> tuple[TrainConfig, object]:
    declared = declared_options()
    config = TrainConfig(**{f.name: values[f.name] for f in fields(TrainConfig) if f.name in values})
    options = {opt.name: values[key] for key, opt in declared.items() if key in values and method in opt.defaults}
    foreign = [(key, opt) for key, opt in declared.items() if key in values and method not in opt.defaults]
    if foreign:
        key, opt = foreign[0]
        raise ConfigError(f"{key} is an option of {' / '.join(opt.defaults)}, not of method {method!r}")
    from .methods.registry import get_method

    return config, get_method(method, seed=config.seed, **options)  # checks the options against their declaration


def resolve(flag_values: dict, file_values: dict | None = None, config_file: str | None = None) -> TrainRequest:
    """Merge the config file and the flags (flags win), check every value once, and resolve the task stream.

    The file is checked on its own first, so a bad value in it is reported with the file's name."""
    file_values = file_values or {}
    known = {f.name for f in fields(TrainConfig)} | set(declared_options()) | set(RUN_DEFAULTS)
    unknown = sorted(set(file_values) - known - set(OLD_KEYS))
    if unknown:
        raise ConfigError(f"{config_file}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    try:
        file_values = new_keys(file_values)
    except ConfigError as exc:
        raise ConfigError(f"{config_file}: {exc}") from None
    flag_values = new_keys(flag_values)
    if file_values:
        try:
            run = _run_settings(file_values)
            _settings(run["method"], file_values)
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    given = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    protocol = _run_settings(given)["protocol"]
    preset = {}
    if protocol is not None:
        from .protocols import default_tasks, get_protocol

        chosen = get_protocol(protocol)
        preset = {**chosen.settings, "tasks": default_tasks(chosen)}
        preset = {k: v for k, v in preset.items() if v is not None}
    merged = {**preset, **given}  # the user's flags and config file override the protocol's preset
    run = _run_settings(merged)
    if run["tasks"] is None:
        need = f"--tasks PATH_TO_{protocol.upper()}" if protocol else "--tasks (a sequence.json or a folder of task folders)"
        raise ConfigError(f"no tasks: pass {need}, or 'tasks' in --config")
    config, method = _settings(run["method"], merged)
    _check_named_order(run["order"], protocol)
    if protocol is not None and chosen.orders:
        tasks, manifest_base = chosen.cl_benchmark_folders(Path(run["tasks"]), run["order"]), None
        metrics = chosen.task_metrics(tasks)
    elif protocol is not None and run["order"] is None:
        tasks, manifest_base, metrics = chosen.task_folders(Path(run["tasks"])), None, dict(chosen.metrics)
        for name, folder in tasks:
            split_file(folder, "train")
    else:
        tasks, manifest_base, metrics = resolve_tasks(run["tasks"], run["order"])
        if protocol is not None:
            metrics = {**metrics, **{t: m for t, m in chosen.metrics.items() if t in dict(tasks)}}
    record = None if protocol is None else chosen.record(given, tasks, metrics)
    from ..evaluator.models import DEFAULT_BASE

    return TrainRequest(run["base"] or manifest_base or DEFAULT_BASE, tasks, method, config, metrics=metrics,
                        eval_split=run["eval_split"], eval_limit=run["eval_limit"], eval_rows=run["eval_rows"],
                        device=run["device"], report_to=run["report_to"], protocol=record,
                        data_fields=named_fields(run["tasks"], tasks, Fields(run["prompt_field"], run["answer_field"])))


def _check_named_order(order: list[str] | None, protocol: str | None) -> None:
    """``--order order1`` (one of O-LoRA's orders by name) is refused outside ``--protocol standard-cl``."""
    from .protocols import STANDARD_CL_ORDERS

    if order and len(order) == 1 and order[0] in STANDARD_CL_ORDERS and protocol != "standard-cl":
        raise ConfigError(f"--order {order[0]} names one of O-LoRA's task orders, which only --protocol standard-cl "
                          "knows; add --protocol standard-cl, or list the task names")


def named_fields(root: str, tasks: list[tuple[str, Path]], given: Fields) -> dict:
    """Per task, the record fields named for its data: a manifest entry's ``prompt_field``/``answer_field``, else the
    flags' (``given``); tasks with none named are left out (their fields are recognised)."""
    path = Path(root)
    entries = {t.name: t for t in load_sequence(path).tasks} if path.is_file() or (path / MANIFEST).is_file() else {}
    named = {}
    for task, _ in tasks:
        entry = entries.get(task)
        fields = Fields(getattr(entry, "prompt_field", None) or given.prompt, getattr(entry, "answer_field", None) or given.answer)
        if fields.prompt or fields.answer:
            named[task] = fields
    return named


def resolve_tasks(tasks: str, order: list[str] | None) -> tuple[list[tuple[str, Path]], str | None, dict[str, str]]:
    """A sequence manifest (its task order, data and metrics) or a data root (its task folders, sorted or in ``order``)."""
    root = Path(tasks)
    if root.is_file() or (root / MANIFEST).is_file():
        seq = load_sequence(root)
        chosen = [(t.name, seq.data_dir(t)) for t in seq.tasks]
        base = seq.base_model
        metrics = {t.name: t.metric for t in seq.tasks}
    elif root.is_dir():
        chosen = [(p.name, p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        base, metrics = None, {}
    else:
        raise DataError(f"{root}: no such task sequence (a sequence.json or a folder of task folders)")
    if order:
        by_name = dict(chosen)
        missing = [n for n in order if n not in by_name]
        if missing:
            raise DataError(f"order names task(s) {missing} not found in {root}; it has {sorted(by_name)}")
        checks.unique("order: task", order)
        chosen = [(n, by_name[n]) for n in order]
    if not chosen:
        raise DataError(f"{root}: holds no task folders")
    for name, folder in chosen:
        checks.safe_name("task name", name)
        split_file(folder, "train")
    return chosen, base, metrics
