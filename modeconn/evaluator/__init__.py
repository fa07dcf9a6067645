"""A base model + K points in LoRA space + tasks → numbers: base models, task data, metrics, the path-aware LoRA
layer, the shared un-adapted prefix, the token budget, and the batched evaluation itself."""
