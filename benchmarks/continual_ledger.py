"""The continual benchmark's finished runs, kept in the repository so that a session that ends mid-experiment loses
none of them: ``save`` copies what a finished run is known by (metrics.json, sequence.json, its ``.seconds``) from
--runs into the ledger folder; ``restore`` copies them back, so that `continual.py` skips those runs again.

    python benchmarks/continual_ledger.py save    --runs /work/bench-runs --ledger benchmarks/results/runs
    python benchmarks/continual_ledger.py restore --runs /work/bench-runs --ledger benchmarks/results/runs

Checkpoints and states are left out (megabytes per run; the tables read only these records). A run is recognised by
the command its metrics.json records, which holds --runs and --tasks as absolute paths: restore into the same paths
(the worktree and runs folders named in the ledger's commands.txt)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEPT = ("metrics.json", "sequence.json")


def finished_runs(root: Path) -> list[Path]:
    """Every run folder under ``root`` holding a metrics.json (a finished run), relative to ``root``."""
    return sorted(p.parent.relative_to(root) for p in root.glob("**/metrics.json"))


def _copy(src: Path, dst: Path) -> bool:
    """Copy one file unless ``dst`` already holds the same bytes; True when something was written."""
    if not src.is_file() or (dst.is_file() and dst.read_bytes() == src.read_bytes()):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return True


def transfer(source: Path, target: Path) -> int:
    """Copy each finished run's records from ``source`` to ``target`` (same relative paths); the number of runs
    with something new."""
    changed = 0
    for run in finished_runs(source):
        wrote = [_copy(source / run / name, target / run / name) for name in KEPT]
        wrote.append(_copy(source / run.parent / f"{run.name}.seconds", target / run.parent / f"{run.name}.seconds"))
        changed += any(wrote)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("--runs", type=Path, required=True, help="the benchmark's --runs folder")
    parser.add_argument("--ledger", type=Path, required=True, help="the folder in the repository that keeps them")
    args = parser.parse_args(argv)
    source, target = (args.runs, args.ledger) if args.action == "save" else (args.ledger, args.runs)
    if not source.is_dir():
        parser.error(f"{source}: no such folder")
    changed = transfer(source, target)
    print(f"{args.action}: {changed} of {len(finished_runs(source))} finished runs copied to {target}")


if __name__ == "__main__":
    main()
