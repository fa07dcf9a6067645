"""What the GPU check runs on, checked before its first step spends a GPU minute.

    python benchmarks/gpu_env.py wheels DIR            DIR holds exactly the wheels of gpu_wheels.txt (one of each)
    python benchmarks/gpu_env.py check --site SITE --out FILE [--cuda]
        the carried wheels' requirements met by what is installed, every modeconn module importable, CUDA there (--cuda);
        writes the versions and the device to FILE (JSON)

Each problem is one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import pkgutil
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTED = ROOT / "benchmarks" / "gpu_wheels.txt"
VERSIONS = ["torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "huggingface-hub", "datasets",
            "numpy", "scipy", "pandas", "pyarrow", "fsspec", "matplotlib", "pytest"]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def listed() -> dict[str, str]:
    """NAME==VERSION lines of gpu_wheels.txt as {normalised name: version}."""
    lines = [line.split("#")[0].strip() for line in LISTED.read_text().splitlines()]
    return {normal(name): version for name, _, version in (line.partition("==") for line in lines if line)}


def check_wheels(folder: Path) -> list[str]:
    found: dict[str, list[str]] = {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        found.setdefault(normal(name), []).append(version)
    want = listed()
    problems = [f"{folder}: no wheel of {name}=={version} (run bash benchmarks/gpu_wheels.sh here; the device call carries .whl)"
                for name, version in want.items() if version not in found.get(name, [])]
    problems += [f"{folder}: {name} {' and '.join(versions)} where gpu_wheels.txt lists {want.get(name, 'none')} (run bash benchmarks/gpu_wheels.sh here; the device call carries .whl)"
                 for name, versions in found.items() if versions != [want.get(name)]]
    return problems


def unmet(site: Path) -> list[str]:
    """Requirements of the distributions installed in ``site`` that the environment does not satisfy."""
    from packaging.requirements import Requirement

    problems = []
    for dist in metadata.distributions(path=[str(site)]):
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{dist.metadata['Name']} needs {req}: not installed (add it to benchmarks/gpu_wheels.txt)")
                continue
            if not req.specifier.contains(have, prereleases=True):
                problems.append(f"{dist.metadata['Name']} needs {req}: {have} is installed (carry another version)")
    return problems


def unimportable() -> list[str]:
    import modeconn

    problems = []
    names = ["modeconn"] + [m.name for m in pkgutil.walk_packages(modeconn.__path__, "modeconn.") if not m.name.endswith("__main__")]
    for name in names + ["datasets", "accelerate", "peft", "pytest"]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  (any failure to import is the finding)
            problems.append(f"import {name}: {type(exc).__name__}: {exc}")
    return problems


def environment(cuda: bool) -> tuple[dict, list[str]]:
    import torch

    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    record = {"python": platform.python_version(), "executable": sys.executable, "versions": versions,
              "cuda_available": torch.cuda.is_available(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    problems = []
    if torch.cuda.is_available():
        record.update(gpu=torch.cuda.get_device_name(), gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                      bf16_supported=torch.cuda.is_bf16_supported())
    elif cuda:
        problems.append("no CUDA device visible to torch")
    return record, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    wheels = sub.add_parser("wheels")
    wheels.add_argument("folder", type=Path)
    check = sub.add_parser("check")
    check.add_argument("--site", type=Path, required=True)
    check.add_argument("--out", type=Path, required=True)
    check.add_argument("--cuda", action="store_true")
    args = parser.parse_args()
    if args.command == "wheels":
        problems = check_wheels(args.folder)
        if not problems:
            print(f"{args.folder}: the wheels of gpu_wheels.txt, one of each")
    else:
        record, problems = environment(args.cuda)
        problems += unmet(args.site) + unimportable()
        record["problems"] = problems
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "problems"}))
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
