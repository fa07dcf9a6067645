"""Narrow signatures (issue 28): no public function or method in modeconn takes more than 8 parameters, and no call
in modeconn passes more than 4 positional arguments — past that, settings travel as one object and options by keyword.
"""
import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import modeconn

ROOT = Path(modeconn.__file__).resolve().parent
MAX_PARAMETERS = 8
MAX_POSITIONAL = 4


def _modules():
    for info in pkgutil.walk_packages([str(ROOT)], "modeconn."):
        if info.name != "modeconn.__main__":  # running it is the CLI
            yield importlib.import_module(info.name)


def _public_callables(module):
    """``(qualified name, function)`` of every public function and public method a module defines (not imports)."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                if not attr.startswith("_") and inspect.isfunction(function):
                    yield f"{module.__name__}.{name}.{attr}", function


def _width(function) -> int:
    names = list(inspect.signature(function).parameters)
    return len(names) - (1 if names and names[0] in ("self", "cls") else 0)


def test_no_public_function_takes_more_than_eight_parameters():
    wide = sorted({f"{name} ({_width(f)})" for module in _modules() for name, f in _public_callables(module)
                   if _width(f) > MAX_PARAMETERS})
    assert not wide, f"more than {MAX_PARAMETERS} parameters (group settings into a dataclass):\n" + "\n".join(wide)


def test_no_call_passes_more_than_four_positional_arguments():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and len(node.args) > MAX_POSITIONAL:
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {ast.unparse(node.func)} ({len(node.args)})")
    assert not found, f"calls with more than {MAX_POSITIONAL} positional arguments (pass the rest by keyword):\n" + \
        "\n".join(found)


def test_the_checks_catch_what_they_look_for():
    """The walkers themselves: a nine-parameter function and a five-positional call are found."""
    def nine(a, b, c, d, e, f, g, h, i):
        return a

    assert _width(nine) == 9
    call = ast.parse("f(1, 2, 3, 4, 5)").body[0].value
    assert len(call.args) == 5 > MAX_POSITIONAL
