"""Writing files so that nothing the user had is lost: write to a temporary name, then rename.

Temporary names are ``.NAME.PID-XXXXXXXX.partial[.suffix]`` beside ``NAME``: the next write of ``NAME`` removes
those whose process is gone (a run killed with ``kill -9`` leaves them), see :func:`remove_stale_partials`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)


def make_partial(path: str | Path, *, is_dir: bool = False, suffix: str = "") -> Path:
    """Create and return an empty temporary sibling of `path` (a file, or a folder if `is_dir`), named after
    `path` and this process, with the permissions ``open``/``mkdir`` would give. Stale partials of `path` left
    by dead processes are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    prefix, end = f".{path.name}.{os.getpid()}-", ".partial" + suffix
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=end, dir=path.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)
        return tmp
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=end, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
    return Path(name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the temporary siblings of `path` (``.NAME.PID-XXXXXXXX.partial*``, and the pid-less
    ``.NAME.XXXXXXXX.partial*`` of earlier versions) whose process is no longer running, and return them.
    A ``.NAME.old`` left by a folder swap killed half-way is put back when `path` is missing, else removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)-)?[A-Za-z0-9_]{{8}}\.partial")
    removed = []
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or (match.group(1) and _alive(int(match.group(1)))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    old = path.with_name(f".{path.name}.old")
    if old.is_dir() and not old.is_symlink():
        if not path.exists() and not path.is_symlink():
            old.rename(path)
        else:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    if removed:
        log.info("removed %d stale partial output(s) of %s left by killed runs: %s",
                                         len(removed), path, ", ".join(p.name for p in removed))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    tmp = make_partial(path, is_dir=is_dir, suffix="" if is_dir else path.suffix)
    try:
        yield tmp
        if is_dir and path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy values and paths."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _lock_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.maskdetect-lock")


@contextlib.contextmanager
def output_lock(paths: "list[Path] | tuple[Path, ...]") -> Iterator[None]:
    """Hold a lock on each output in `paths` for the time of a run: ``.NAME.maskdetect-lock`` beside it, holding
    this process's id. Another run that wants one of them while this process lives is refused, so two runs on
    one output cannot mix their files (one's video with the other's events). A lock whose process is gone (a
    run killed with ``kill -9``) is taken over; one this process holds already is left to its holder.

    Raises:
        OutputError: a living process holds one of the locks (naming it and its pid).
    """
    from maskdetect.errors import OutputError

    taken: list[Path] = []
    try:
        for path in dict.fromkeys(Path(p) for p in paths):
            lock = _lock_name(path)
            lock.parent.mkdir(parents=True, exist_ok=True)
            for _attempt in range(3):
                try:
                    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK)
                except FileExistsError:
                    try:
                        owner = int(lock.read_text(encoding="utf-8").strip() or 0)
                    except (OSError, ValueError):
                        owner = 0
                    if owner == os.getpid():
                        break  # held by this process already (an outer caller): it releases it
                    if owner and _alive(owner):
                        raise OutputError(f"{path}: another maskdetect run (pid {owner}) is writing it now; wait "
                                          f"for it to end, or choose another output") from None
                    lock.unlink(missing_ok=True)  # its process is gone
                    continue
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(f"{os.getpid()}\n")
                taken.append(lock)
                break
        yield
    finally:
        for lock in taken:
            lock.unlink(missing_ok=True)
