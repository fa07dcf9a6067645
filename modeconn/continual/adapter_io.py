"""Writing one named adapter of a PeftModel as a plain peft adapter folder (what the analysis side loads)."""
from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_folder

FAST = "default"  # peft's name for the adapter every method trains


def save_peft_adapter(model, adapter: str, folder: Path) -> None:
    """Save one named adapter of a PeftModel with peft's own ``save_pretrained``, as a plain adapter folder."""
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp / "saved", selected_adapters=[adapter], save_embedding_layers=False)
        saved = tmp / "saved" if adapter == FAST else tmp / "saved" / adapter
        config_path = saved / "adapter_config.json"
        config = json.loads(config_path.read_text())
        if isinstance(config.get("target_modules"), list):  # peft writes a set: its order changes from run to run
            config["target_modules"] = sorted(config["target_modules"])
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for item in saved.iterdir():
            if item.is_file():
                item.rename(tmp / item.name)
