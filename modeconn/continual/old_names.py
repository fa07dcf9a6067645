"""Old spellings of training settings mapped to today's, so old flags, config files and recorded runs still read."""
from __future__ import annotations

# the training precision's former name and values (``--precision fp32``), before it took the analysis spelling
PRECISION_VALUES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "auto": "auto"}
# flags (and config-file keys) renamed to ``--<method>-<option>``; the old ones stay as hidden aliases
OLD_KEYS = {"precision": "dtype", "gamma": "ilora_gamma", "ema": "ilora_ema", "consistency": "ilora_consistency"}
# method fields renamed after their flags: the keys a run recorded under its method's options before
OLD_FIELDS = {
    "gem": {"margin": "gem_margin"},
    "l2p": {"pool_size": "l2p_pool", "prompt_length": "l2p_length", "top_k": "l2p_top_k", "key_weight": "l2p_key_weight"},
    "pp": {"prompt_length": "pp_length"},
    "olora": {"orth_lambda": "olora_lambda1", "l2_lambda": "olora_lambda2", "orthogonality": "olora_orth"},
    "ilora": {"gamma": "ilora_gamma", "ema": "ilora_ema", "eval_adapter": "ilora_eval", "variant": "ilora_variant",
              "consistency": "ilora_consistency"},
}


def new_keys(values: dict) -> dict:
    """Flag or config-file values with old keys renamed (the old precision values too); a key given in both spellings
    is refused, since one would silently replace the other."""
    from ..errors import ConfigError

    out = dict(values)
    for old, new in OLD_KEYS.items():
        if out.get(old) is None:
            out.pop(old, None)
            continue
        if out.get(new) is not None:
            raise ConfigError(f"{old} is the old name of {new}; give only {new}")
        value = out.pop(old)
        out[new] = PRECISION_VALUES.get(value, value) if old == "precision" else value
    return out


def new_options(method: str, options: dict) -> dict:
    """A recorded run's method options under today's field names."""
    renamed = OLD_FIELDS.get(method, {})
    return {renamed.get(key, key): value for key, value in options.items()}


def new_config(config: dict) -> dict:
    """A recorded TrainConfig (``config.to_json()``) under today's names: ``precision`` fp32 → ``dtype`` float32."""
    if "precision" not in config:
        return config
    out = {k: v for k, v in config.items() if k != "precision"}
    out["dtype"] = PRECISION_VALUES.get(config["precision"], config["precision"])
    return out


def new_fingerprint(fingerprint: dict) -> dict:
    """An old run's resume fingerprint under today's names, so resuming it compares like with like."""
    out = dict(fingerprint)
    if isinstance(out.get("options"), dict):
        out["options"] = new_options(out.get("method"), out["options"])
    if isinstance(out.get("config"), dict):
        out["config"] = new_config(out["config"])
    return out
