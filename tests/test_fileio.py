"""maskdetect.fileio: outputs appear whole or not at all; partials of killed runs are cleaned, live ones kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from maskdetect.fileio import atomic_path, atomic_write_json, make_partial, remove_stale_partials


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed half-way")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    atomic_write_json(target, {"a": np.arange(3), "p": tmp_path})
    assert json.loads(target.read_text()) == {"a": [0, 1, 2], "p": str(tmp_path)}


def test_atomic_folder_swaps_whole(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with atomic_path(folder, is_dir=True) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (folder / "old.txt").exists()  # nothing changes until the block succeeds
    assert sorted(p.name for p in folder.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_partials_get_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    assert make_partial(tmp_path / "a.mp4").stat().st_mode & 0o777 == 0o666 & ~umask
    assert make_partial(tmp_path / "d", is_dir=True).stat().st_mode & 0o777 == 0o777 & ~umask


def test_stale_partials_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "clip.mp4"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".clip.mp4.{int(dead.stdout)}-abcd1234.partial.mp4"
    legacy = tmp_path / ".clip.mp4.abcd1234.partial"  # pid-less name of earlier versions
    mine = make_partial(target, suffix=".mp4")
    other = tmp_path / ".other.mp4.1-abcd1234.partial"  # another output's partial: not ours to touch
    for path in (stale, legacy, other):
        path.write_text("x")
    removed = remove_stale_partials(target)
    assert sorted(removed) == sorted([stale, legacy])
    assert mine.exists() and other.exists()


def test_a_folder_swap_killed_half_way_is_put_back(tmp_path):
    folder, old = tmp_path / "export", tmp_path / ".export.old"
    old.mkdir()
    (old / "model.tflite").write_text("model")
    remove_stale_partials(folder)  # the swap renamed export -> .export.old and died before the new one landed
    assert (folder / "model.tflite").read_text() == "model" and not old.exists()
