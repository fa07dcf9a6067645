"""The package's shape: every module imports on its own, every import (lazy ones too) names a module that exists,
the import graph has no cycle, and data flows one way between the folders (lora → evaluator → analysis → plots;
continual beside analysis; demo and the CLI on top)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "modeconn"

# what each part may import from (besides itself); "core" is the top-level helpers every part may use
ALLOWED = {
    "core": {"core"},
    "lora": {"core"},
    "evaluator": {"core", "lora"},
    "analysis": {"core", "lora", "evaluator"},
    "continual": {"core", "lora", "evaluator", "analysis.bezier"},  # seq-path fits a curve between two minima
    "plots": {"core", "lora", "evaluator", "analysis", "continual.metrics", "continual.train_log", "continual.compare"},
    "report": {"core", "lora", "evaluator", "analysis", "continual", "plots"},  # any runs' results → one page
    "demo": {"core", "lora", "evaluator", "analysis", "continual", "plots", "report"},
    "cli": {"core", "lora", "evaluator", "analysis", "continual", "plots", "report", "demo"},
}


CORE = ("errors", "files", "provenance", "checks", "outdir", "ranks", "results")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every modeconn module ``name`` imports, at the top or inside a function, resolved to a module name."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "modeconn":
                continue
            for alias in node.names:  # `from .pkg import module` imports the module
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "modeconn"}
    return found - {name}


def part(name: str) -> str:
    rest = name.split(".")[1:]
    if not rest or rest[0] in CORE + ("__main__",):
        return "core" if rest and rest[0] != "__main__" else "cli"
    if rest[0] in ("cli", "cli_reference"):
        return "cli"
    return rest[0]


def test_every_import_names_an_existing_module():
    missing = {(name, target) for name in MODULES for target in imports_of(name) if target not in MODULES}
    assert not missing


def test_the_import_graph_has_no_cycle():
    """Lazy imports count too: a cycle hidden in a function still ties two modules into one."""
    graph = {name: imports_of(name) for name in MODULES}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " → ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [name])


def test_data_flows_one_way_between_the_folders():
    wrong = []
    for name in MODULES:
        for target in imports_of(name):
            if part(target) == part(name) or name == "modeconn":
                continue
            allowed = ALLOWED[part(name)]
            if part(target) not in allowed and not any(target.startswith(f"modeconn.{a}") for a in allowed if "." in a):
                wrong.append(f"{name} → {target}")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_every_module_imports_on_its_own():
    """Each module imported first, in a process where no other modeconn module is loaded yet."""
    code = (
        "import importlib, sys\n"
        "import torch, transformers  # loaded once; only modeconn's own modules are dropped between imports\n"
        f"names = {sorted(n for n in MODULES if not n.endswith('__main__'))!r}\n"
        "bad = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'modeconn' or m.startswith('modeconn.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr[-2000:]


def test_no_module_changes_process_wide_state_behind_the_caller():
    """No matplotlib backend switch, no global reseeding outside a forked RNG, no hand-set routing of the path layer."""
    offenders = []
    for name, path in MODULES.items():
        text = path.read_text()
        for needle in ("matplotlib.use(", "holder.value", "getattr(method", "disable_progress_bars()", ".name_or_path ="):
            if needle in text:
                offenders.append(f"{name}: {needle}")
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if "torch.manual_seed(" in line and not any("fork_rng" in earlier for earlier in lines[max(0, i - 3) : i]):
                offenders.append(f"{name}:{i + 1}: torch.manual_seed outside a fork_rng block")
    assert not offenders
