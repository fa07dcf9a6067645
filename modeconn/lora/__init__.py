"""Points in LoRA space, as data: adapters (module name → A, B), paths and spans between them, planes through three
points, random directions around one, and the task-sequence manifest that says which adapter belongs to which task."""
