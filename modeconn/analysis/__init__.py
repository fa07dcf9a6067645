"""Studies built on the evaluator: one set-up (``Study``), barriers along paths, adaptive search, fitted Bézier
curves, planes and landscapes (surfaces), and sweeps over a task sequence's adapters."""
