"""Outputs that can never destroy inputs: the one check every command that writes runs before it loads a
model or reads a byte, and the ownership marker that lets a command replace only folders it made.

* :func:`check_paths` refuses, with an :class:`~maskdetect.errors.OutputError` naming both paths, an output
  that is an input (after resolving ``..`` and symbolic links, or through a hard link), lies inside an input
  folder, is an output folder holding an input, or is the same file as (or inside) another output.
* :func:`check_new_files` / :func:`record_files` guard a folder that receives files beside others (``predict
  --out DIR``): a file already there is overwritten only if our marker lists it; other files are kept.
* :func:`owned_dir` writes a folder output: a temporary folder that replaces ``path`` on success, and an
  existing ``path`` only when it is empty, or carries our marker (:data:`MARKER`, written by the same command)
  and holds nothing but the files listed in it. Anything else makes the command refuse; nothing is deleted.

Example:
    >>> check_paths({"--source": "clip.mp4"}, {"--out": "./x/../clip.mp4"})  # doctest: +SKIP
    OutputError: --out ./x/../clip.mp4 is the input --source clip.mp4 ...
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping

from maskdetect.errors import OutputError
from maskdetect.fileio import atomic_path, atomic_write_json

MARKER = ".maskdetect-output.json"

PathLike = str | os.PathLike


def resolved(path: PathLike) -> Path:
    """`path` resolved the way the kernel resolves it: made absolute by joining the working directory (never by
    collapsing ``..`` as text), then each component in turn, a symbolic link replaced by its target before the
    next ``..`` applies (``lnk/../x`` is ``x`` beside what ``lnk`` points to). Parts not created yet are kept.

    Raises:
        OutputError: the path runs into a symbolic link loop (or a chain too long for the kernel).
    """
    raw = os.path.expanduser(os.fspath(path))
    joined = raw if os.path.isabs(raw) else os.path.join(os.getcwd(), raw)
    real = os.path.realpath(joined)  # component by component, links followed before ".."
    try:
        os.stat(real)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{os.fspath(path)}: a symbolic link loop (or a chain of links too long to follow); "
                              f"fix or remove the link, or give another path.") from None
    return Path(real)


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def _same_inode(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _hard_link_into(output: Path, folder: Path) -> Path | None:
    """A file of `folder` (recursively) that is the same file as `output` (a hard link), or None."""
    try:
        st = output.stat()
    except OSError:
        return None
    if not output.is_file() or st.st_nlink < 2:
        return None
    for root, _dirs, files in os.walk(folder):
        for name in files:
            candidate = Path(root, name)
            try:
                cst = candidate.stat()
            except OSError:
                continue
            if (cst.st_ino, cst.st_dev) == (st.st_ino, st.st_dev):
                return candidate
    return None


def check_paths(inputs: Mapping[str, PathLike | None], outputs: Mapping[str, PathLike | None], *,
                folders: tuple[str, ...] = (), into: tuple[str, ...] | None = None) -> None:
    """Refuse outputs that could destroy an input or each other, and file outputs that name a folder.

    Args:
        inputs: ``{option name: path}`` of what the command reads (None entries, e.g. a webcam, are skipped).
        outputs: ``{option name: path}`` of what it writes (None entries are skipped).
        folders: the output names that are folders the command may replace as a whole.
        into: the output names that are folders the command writes files into (a run directory). Every other
            output is a file, and an existing folder there is refused now, before any work (not after the last
            frame). None (callers from before this option): ``--out`` when `folders` is empty.

    Raises:
        OutputError: naming both paths and what to do.
    """
    if into is None:
        into = () if folders else ("--out",)
    ins = {name: (p, resolved(p)) for name, p in inputs.items() if p is not None}
    outs = {name: (p, resolved(p)) for name, p in outputs.items() if p is not None}
    for out_name, (out_raw, out) in outs.items():
        if out_name not in folders and out_name not in into and out.is_dir():
            raise OutputError(f"{out_name} {out_raw} is an existing folder, but {out_name} names a file. Give a file "
                              f"path (a new name, or an existing file to replace).")
    for out_name, (out_raw, out) in outs.items():
        where = f"{out_name} {out_raw}"
        for in_name, (in_raw, src) in ins.items():
            what = f"the input {in_name} {in_raw}"
            if out == src or _same_inode(out, src):
                raise OutputError(f"{where} is {what} (same file{'' if out == src else ' through a hard link'}): "
                                  f"writing it would destroy the input. Choose another {out_name}.")
            if _inside(out, src) and src.is_dir():
                raise OutputError(f"{where} lies inside {what} ({src}). Write outputs outside the input folder.")
            if out_name in folders and _inside(src, out):
                raise OutputError(f"{where} is a folder that holds {what}; it may be replaced, so choose an "
                                  f"output folder that does not contain the input.")
            if src.is_dir():
                linked = _hard_link_into(out, src)
                if linked is not None:
                    raise OutputError(f"{where} is a hard link to {linked} inside {what}: writing it would change "
                                      f"the input. Choose another {out_name}.")
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pa, pb = outs[a][1], outs[b][1]
            if pa == pb or _same_inode(pa, pb):
                raise OutputError(f"{a} {outs[a][0]} and {b} {outs[b][0]} are the same file; give them "
                                  f"different paths.")
            for (x, px), (y, py) in (((a, pa), (b, pb)), ((b, pb), (a, pa))):
                if x in folders and _inside(py, px):
                    raise OutputError(f"{y} {outs[y][0]} lies inside the output folder {x} {outs[x][0]}, which "
                                      f"is replaced as a whole; put it outside.")


def _marker_files(folder: Path, command: str) -> set[str] | None:
    """The files our marker in `folder` lists as written by `command` (None: no such marker)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("command") != command:
        return None
    return {str(f) for f in marker.get("files", [])}


def _listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()}


def check_replaceable(path: PathLike, command: str, *,
                      legacy_files: Callable[[Path], set[str] | None] | None = None) -> None:
    """Refuse to replace `path` unless it is missing, an empty folder, or a folder made by `command` (our
    marker) that holds only the files the marker lists. `legacy_files(path)` may name the files of an output
    made before the marker existed (None: not ours).

    Raises:
        OutputError: naming the folder and the files that are not ours.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(f"{path}: exists and is not a folder (or is a symbolic link); `maskdetect {command}` "
                          f"writes a new folder there. Choose another output folder.")
    if not path.exists() or not any(path.iterdir()):
        return
    files = _marker_files(path, command)
    if files is None and legacy_files is not None:
        files = legacy_files(path)
    if files is None:
        raise OutputError(f"{path}: folder is not empty and was not made by `maskdetect {command}` (it has no "
                          f"{MARKER} from that command); refusing to replace it. Choose another output folder, "
                          f"or empty it yourself.")
    foreign = sorted(_listing(path) - files - {MARKER})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{path}: holds files `maskdetect {command}` did not write ({shown}); refusing to replace "
                          f"the folder so they are not lost. Move them out, or choose another output folder.")


@contextlib.contextmanager
def owned_dir(path: PathLike, command: str, *,
              legacy_files: Callable[[Path], set[str] | None] | None = None) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces `path` (see :func:`check_replaceable`, run
    before and again just before the swap) with our marker listing the files written."""
    check_replaceable(path, command, legacy_files=legacy_files)
    with atomic_path(path, is_dir=True) as tmp:
        yield tmp
        atomic_write_json(tmp / MARKER, {"command": command, "files": sorted(_listing(tmp) - {MARKER})})
        check_replaceable(path, command, legacy_files=legacy_files)


def check_new_files(folder: PathLike, names: list[str], command: str) -> None:
    """Before writing `names` into the shared folder `folder` (other content is kept): refuse if one of them
    exists and is not listed in our marker as written by `command`.

    Raises:
        OutputError: naming the files that would be overwritten.
    """
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise OutputError(f"{folder}: exists and is not a folder. Choose another output folder.")
    ours = _marker_files(folder, command) or set()
    taken = sorted(n for n in names if n not in ours and ((folder / n).exists() or (folder / n).is_symlink()))
    if taken:
        shown = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise OutputError(f"{folder}: already holds {shown}, not written by `maskdetect {command}`; refusing to "
                          f"overwrite. Choose another output folder, or move them out.")


def record_files(folder: PathLike, names: list[str], command: str) -> None:
    """Add `names` to the marker of the shared folder `folder` (so a later run of `command` may replace them)."""
    folder = Path(folder)
    files = (_marker_files(folder, command) or set()) | set(names)
    atomic_write_json(folder / MARKER, {"command": command, "files": sorted(files)})


__all__ = ["MARKER", "check_new_files", "check_paths", "check_replaceable", "owned_dir", "record_files", "resolved"]
