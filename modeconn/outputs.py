"""Write a result's files all-or-nothing: everything goes to a hidden temporary folder first, then is renamed."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def write_all(out: str | Path, writers: dict[str, Callable[[Path], None]]) -> list[Path]:
    """Call each ``writer(tmp_path)`` for its file name, then move the finished files into ``out`` together."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".modeconn-", dir=out))
    try:
        for name, writer in writers.items():
            writer(tmp / name)
        final = []
        for name in writers:
            os.replace(tmp / name, out / name)
            final.append(out / name)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
