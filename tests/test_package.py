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
