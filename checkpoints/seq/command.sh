python scripts/build_default.py --out checkpoints --stages seq
