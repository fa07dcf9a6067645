"""Importing the package is cheap and has no side effects; every public name resolves."""
import subprocess
import sys

import modeconn


def test_import_loads_no_heavy_modules():
    code = "import modeconn, sys; print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_public_name_resolves():
    for name in modeconn.__all__:
        assert getattr(modeconn, name) is not None


def test_an_installed_package_finds_the_embedded_default(tmp_path):
    """Built as a wheel and installed elsewhere, modeconn finds checkpoints/ as its package data modeconn.embedded."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "w"),
                    str(root)], check=True, capture_output=True)
    wheel = next((tmp_path / "w").glob("modeconn-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True)
    code = ("import modeconn; from modeconn.evaluator.models import checkpoints_dir; d = checkpoints_dir(); "
            "s = modeconn.load_sequence(d / 'seq'); print(modeconn.__file__); print(d); "
            "print(all(s.adapter_dir(t).is_dir() and s.data_dir(t).is_dir() for t in s.tasks))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "MODECONN_CHECKPOINTS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(tmp_path / "site")}).stdout.split()
    assert out[0].startswith(str(tmp_path / "site")) and out[1] == str(tmp_path / "site" / "modeconn" / "embedded")
    assert out[2] == "True"
