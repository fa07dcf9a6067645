"""The output folder of a command: checked before any work, held by one run at a time, and never a place where
modeconn deletes or overwrites what it did not write.

``claim(out, kind)`` refuses a file, an unwritable folder, or a folder holding files that are not this kind's output;
takes ``.modeconn.lock`` (a second, independent run on the same folder fails at once; a lock left by a dead process
is taken over); removes the temporary ``.modeconn-*`` leftovers of a killed run; and yields a ``Claimed`` folder
whose ``path(…)`` refuses any path that would leave it. Under ``accelerate launch`` only the main process claims.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import OutputError
from .files import TEMP_PREFIX

LOCK = ".modeconn.lock"
_RESULT = ["{stem}.json", "{stem}.png", "{stem}.html"]
# what each kind of command writes at the top of its folder (names or glob patterns); a folder holding anything
# else is not this command's output and is refused
OWNED = {
    "result": [p.format(stem=s) for s in ("barrier", "plane", "landscape", "sweep", "accuracy", "train_log", "compare") for p in _RESULT],
    "curve": ["adapter_config.json", "adapter_model.safetensors", "curve.json", "README.md"],
}


def main_process() -> bool:
    """False on the other ranks of ``accelerate launch`` / torchrun (they compute, but only rank 0 writes)."""
    return os.environ.get("RANK", "0") == "0"


@dataclass(frozen=True)
class Claimed:
    root: Path

    def path(self, *parts: str) -> Path:
        """``root/parts…``, refused if it would resolve outside the folder (``..``, an absolute part, a symlink out)."""
        target = self.root.joinpath(*parts)
        resolved, root = target.resolve(), self.root.resolve()
        if resolved != root and root not in resolved.parents:
            raise OutputError(f"{'/'.join(parts)!r} would be written outside the output folder {self.root}")
        return target


def leftovers(out: Path) -> list[Path]:
    """Temporary files and folders that a killed writer left (``.modeconn-*``), anywhere under ``out``."""
    found = []
    for folder, dirs, files in os.walk(out):
        for name in list(dirs) + files:
            if name.startswith(TEMP_PREFIX):
                found.append(Path(folder) / name)
        dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIX)]
    return found


def clean_leftovers(out: Path) -> None:
    """Remove a killed run's temporary files; a folder caught between the two renames of ``atomic_folder`` (moved
    aside, its replacement not yet in place) is moved back first."""
    for stale in leftovers(out):
        if stale.is_dir() and stale.name.startswith(f"{TEMP_PREFIX}old."):
            for item in stale.iterdir():
                if not (stale.parent / item.name).exists():
                    os.replace(item, stale.parent / item.name)
    for stale in leftovers(out):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _foreign(out: Path, owned: list[str] | None) -> list[str]:
    if owned is None:
        return []
    names = [p.name for p in out.iterdir() if p.name != LOCK and not p.name.startswith(TEMP_PREFIX)]
    return sorted(n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in owned))


def _take_lock(out: Path) -> Path:
    lock = out / LOCK
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                holder = -1
            if holder > 0 and _alive(holder):
                raise OutputError(f"{out} is in use by another modeconn run (process {holder}); wait for it, "
                                  "or choose another output folder") from None
            lock.unlink(missing_ok=True)  # left by a process that no longer runs
            continue
        except OSError as exc:
            raise OutputError(f"cannot write to {out} ({exc.strerror})") from None
        with os.fdopen(handle, "w") as f:
            f.write(f"{os.getpid()}\n")
        return lock
    raise OutputError(f"{out}: cannot take the lock {LOCK}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_usable(out: Path) -> None:
    """Before any work: ``out`` is a folder (or can be made) that this process may write into."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; the output must be a folder")
    existing = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out}: {existing} is not writable")


@contextmanager
def claim(out: str | Path, kind: str | None = "result", owned: list[str] | None = None) -> Iterator[Claimed]:
    """Hold ``out`` for one run of a command whose top-level files are ``owned`` (default: ``OWNED[kind]``;
    ``kind=None``: any, for folders the command checks itself)."""
    out = Path(out)
    owned = owned if owned is not None else (OWNED[kind] if kind else None)
    check_usable(out)
    if not main_process():
        yield Claimed(out)
        return
    if out.is_dir():
        foreign = _foreign(out, owned)
        if foreign:
            raise OutputError(f"{out} holds files modeconn did not write there ({', '.join(foreign[:3])}"
                              f"{', …' if len(foreign) > 3 else ''}); choose an empty or new output folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out} ({exc.strerror})") from None
    lock = _take_lock(out)
    try:
        clean_leftovers(out)
        yield Claimed(out)
    finally:
        lock.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()  # a run that wrote nothing leaves no folder behind
