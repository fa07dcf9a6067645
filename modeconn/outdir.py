"""The output folder of a command: checked before any work, held by one run at a time, and never a place where
modeconn deletes or overwrites what it did not write.

``claim(out, kind)`` refuses a file, an unwritable folder, an output that overlaps one of the command's inputs
(equal, inside, or holding one), a link under it that leads outside, and a folder holding anything modeconn's record
does not vouch for. The record, ``.modeconn.owned.json``, lists every file modeconn wrote there with its sha256:
ownership is by that record, not by name, so a file the user put there or edited since is foreign and the command
refuses (naming it) rather than replace it. ``claim`` then takes ``.modeconn.lock`` (a second, independent run on
the same folder fails at once; a lock left by a dead process is taken over); removes the temporary ``.modeconn-*``
leftovers of a killed run; and yields a ``Claimed`` folder whose ``path(…)`` refuses any path that would leave it.
While a run holds the folder the record is marked open with the names it may write, so the files of a run killed
half-way are still its own when it is resumed. Under ``accelerate launch`` only the main process claims.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OutputError
from .files import TEMP_PREFIX, atomic_write
from .ranks import main_process

LOCK = ".modeconn.lock"
RECORD = ".modeconn.owned.json"
OURS = ".modeconn"  # the prefix of the lock, the record and every temporary name: modeconn's own, never compared
UNHASHED = (".state",)  # validated by their own reader when used (a damaged state is refused with its own message)
_RESULT = ["{stem}.json", "{stem}.png", "{stem}.html"]
KEPT = "kept"  # a long result's pieces (a sweep's pairs, curvature points), each kept as made until the result is written
# what each kind of command writes at the top of its folder (names or glob patterns); a folder holding anything
# else is not this command's output and is refused
OWNED = {
    "result": [p.format(stem=s) for s in ("barrier", "plane", "landscape", "sweep", "accuracy", "train_log", "compare", "curvature") for p in _RESULT]
              + [KEPT],
    "curve": ["adapter_config.json", "adapter_model.safetensors", "curve.json", "README.md"],
    "curves": ["*"],  # sweep --curves-out: one control-point folder per pair, A-B/
}


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
    aside, its replacement not yet in place) is moved back first. Links are removed, never followed."""
    for stale in leftovers(out):
        if stale.is_dir() and not stale.is_symlink() and stale.name.startswith(f"{TEMP_PREFIX}old."):
            for item in stale.iterdir():
                if not item.is_symlink() and not os.path.lexists(stale.parent / item.name):
                    os.replace(item, stale.parent / item.name)
    for stale in leftovers(out):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def check_apart(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output folder that is, lies inside, or holds one of the command's inputs: outputs never touch inputs."""
    target = Path(out).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if target == source or source in target.parents:
            raise OutputError(f"the output {out} {'is' if target == source else 'lies inside'} the input {given}; "
                              "choose an output folder apart from every input")
        if target in source.parents:
            raise OutputError(f"the input {given} lies inside the output {out}; choose an output folder apart from "
                              "every input")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files(entry: Path, root: Path) -> dict[str, str] | None:
    """Every file of a top-level entry (a file, or a folder's files at any depth), relative to ``root``, with its
    sha256 (``-`` under an UNHASHED entry; a link inside, such as W&B's ``latest-run``: where it points); None when the
    entry itself is a link."""
    if entry.is_symlink():
        return None
    hashed = entry.name not in UNHASHED
    if entry.is_file():
        return {entry.name: _sha256(entry) if hashed else "-"}
    found = {}
    for folder, dirs, files in os.walk(entry):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                found[path.relative_to(root).as_posix()] = f"link:{os.readlink(path)}"
                continue
            if name.startswith(OURS) or path.is_dir():
                continue
            found[path.relative_to(root).as_posix()] = _sha256(path) if hashed else "-"
        dirs[:] = [d for d in dirs if not d.startswith(OURS)]
    return found


def read_record(out: Path) -> dict:
    """The ownership record of ``out``: ``entries`` (top-level names modeconn made), ``files`` (path → sha256) and
    ``open`` (the names a run that holds or held the folder may write; null when it finished)."""
    try:
        raw = json.loads((out / RECORD).read_text())
        if isinstance(raw, dict) and isinstance(raw.get("entries"), list) and isinstance(raw.get("files"), dict):
            return raw
    except (OSError, ValueError):
        pass
    return {"entries": [], "files": {}, "open": None}


def _write_record(out: Path, entries: dict[str, dict[str, str]], open_for: list[str] | None) -> None:
    files = {path: sha for found in entries.values() for path, sha in found.items()}
    atomic_write(out / RECORD, json.dumps({"entries": sorted(entries), "files": dict(sorted(files.items())),
                                           "open": open_for}, indent=1) + "\n")


def _matches(name: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatch(name, p) for p in patterns)


def _recorded(record: dict, name: str) -> dict[str, str]:
    """The files (path → sha256) the record lists under the top-level entry ``name``."""
    return {p: sha for p, sha in record["files"].items() if p == name or p.startswith(f"{name}/")}


def _by_record(out: Path, name: str, record: dict) -> bool:
    if name not in record["entries"]:
        return False
    found = _files(out / name, out)
    return found is not None and found == _recorded(record, name)


def _entries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(OURS))


def foreign(out: Path, owned: list[str] | None, shared: bool = False) -> list[str]:
    """The top-level entries of ``out`` modeconn may not replace: not among ``owned``, or not vouched for by the
    record (never written by modeconn, edited since, or a link); with ``shared``, only the ``owned`` names count."""
    record = read_record(out)
    adopted = record.get("open") or []  # a run killed while holding the folder: what it may have written is its own
    bad = []
    for name in _entries(out):
        if shared and not _matches(name, owned):
            continue
        if not _matches(name, owned):
            bad.append(name)
        elif not (_matches(name, adopted) and not (out / name).is_symlink()) and not _by_record(out, name, record) \
                and not _owns_itself(out / name):
            bad.append(name if name not in record["entries"] else f"{name} (changed since modeconn wrote it)")
    return bad


def _owns_itself(folder: Path) -> bool:
    """A folder another modeconn command claimed (``make demo``'s ``report/`` inside ``demo_out``): its own record
    vouches for everything in it."""
    return (not folder.is_symlink() and folder.is_dir() and bool(read_record(folder)["entries"])
            and not foreign(folder, None) and not links_out(folder))


def links_out(out: Path) -> list[str]:
    """Links anywhere under ``out`` that lead outside it (a write through one would land elsewhere)."""
    root, found = out.resolve(), []
    for folder, dirs, files in os.walk(out):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                target = path.resolve()
                if target != root and root not in target.parents:
                    found.append(str(path.relative_to(out)))
    return found


def _take_lock(out: Path) -> Path:
    lock = out / LOCK
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().split()[0]) if not lock.is_symlink() else -1
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
    if not existing.is_dir():
        raise OutputError(f"cannot create {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out}: {existing} is not writable")


def check_before_work(out: str | Path, kind: str | None = "result", owned: list[str] | None = None,
                      inputs: Iterable[str | Path] = (), shared: bool = False) -> None:
    """Every refusal of ``claim`` that needs no lock, for a folder a command will claim later (``--curves-out``)."""
    out = Path(out)
    owned = owned if owned is not None else (OWNED[kind] if kind else None)
    check_usable(out)
    check_apart(out, inputs)
    if not out.is_dir() or not main_process():
        return
    outside = links_out(out) if not shared else [n for n in _entries(out) if _matches(n, owned) and (out / n).is_symlink()]
    if outside:
        raise OutputError(f"{out / outside[0]} is a link{' leading outside the output folder' if not shared else ''}; "
                          "remove it or choose another output folder")
    bad = foreign(out, owned, shared)
    if bad:
        raise OutputError(f"{out} holds files modeconn did not write there ({', '.join(bad[:3])}"
                          f"{', …' if len(bad) > 3 else ''}); move them away, or choose an empty or new output folder")


def record_owned(out: str | Path, names: list[str] | None = None, open_for: list[str] | None = None) -> None:
    """Record ``out``'s top-level entries (or ``names`` of them) as modeconn's, with their current hashes; ``open_for``:
    the names a run killed while holding the folder may have written (kept for its resume)."""
    out = Path(out)
    record, names = read_record(out), names if names is not None else _entries(out)
    keep = {n: _recorded(record, n) for n in record["entries"]  # _by_record has just found them unchanged
            if n not in names and os.path.lexists(out / n) and _by_record(out, n, record)}
    keep.update({n: _files(out / n, out) for n in names if os.path.lexists(out / n)})
    _write_record(out, {n: f for n, f in keep.items() if f is not None}, open_for)


@contextmanager
def claim(out: str | Path, kind: str | None = "result", owned: list[str] | None = None,
          inputs: Iterable[str | Path] = (), shared: bool = False) -> Iterator[Claimed]:
    """Hold ``out`` for one run of a command whose top-level files are ``owned`` (default: ``OWNED[kind]``;
    ``kind=None``: any name). ``inputs``: what the command reads, which the folder may not overlap. ``shared``: a
    folder of the user's (``plot`` beside its JSON): only the ``owned`` names must be modeconn's, the rest is left
    alone. On leaving, what the run wrote is recorded as modeconn's."""
    out = Path(out)
    owned = owned if owned is not None else (OWNED[kind] if kind else None)
    check_before_work(out, owned=owned, inputs=inputs, shared=shared, kind=None)
    if not main_process():
        yield Claimed(out)
        return
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out} ({exc.strerror})") from None
    lock = _take_lock(out)
    killed = None
    try:
        clean_leftovers(out)
        record = read_record(out)
        killed = record.get("open") if shared else None  # a plot beside a killed run's files leaves them its own
        _write_record(out, {n: _recorded(record, n) for n in record["entries"]},
                      sorted(set(record.get("open") or []) | set(owned or ["*"])))
        yield Claimed(out)
    finally:
        try:
            _close(out, owned, killed)
        finally:
            lock.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()  # a run that wrote nothing leaves no folder behind


def _close(out: Path, owned: list[str] | None, killed: list[str] | None) -> None:
    """Record what the run wrote (the ``owned`` names now present) and mark the record finished (or as a killed run
    left it); no record is left in a folder that holds nothing of modeconn's."""
    names = [n for n in _entries(out) if _matches(n, owned)]
    record_owned(out, names, killed)
    if not read_record(out)["entries"] and not killed:
        (out / RECORD).unlink(missing_ok=True)


def name_max(path: str | Path) -> int:
    """The longest file name (bytes) the file system of ``path`` (or of its nearest existing parent) allows."""
    path = Path(path).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    try:
        return int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255
