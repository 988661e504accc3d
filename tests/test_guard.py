"""Outputs can never destroy inputs (maskdetect/guard.py): every way of naming the same file or folder — ``..``,
symbolic links, hard links, parent and child folders — is refused before anything is read or written, and
the inputs hash the same afterwards. Folders are replaced only when our marker says we made them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskdetect.errors import ConfigError, OutputError
from maskdetect.fileio import atomic_path, make_partial, remove_stale_partials
from maskdetect.guard import MARKER, check_new_files, check_paths, owned_dir, record_files
from clips import make_test_clip
from conftest import SAMPLE, run_cli


def tree_hash(root: Path) -> str:
    """One digest of every path, link target and file content under `root` (or of the file `root`)."""
    digest = hashlib.sha256()
    paths = [root] if root.is_file() else sorted(root.rglob("*"))
    for p in paths:
        digest.update(str(p.relative_to(root.parent)).encode())
        if p.is_symlink():
            digest.update(os.readlink(p).encode())
        elif p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def layout(tmp_path):
    """``src/a.jpg``, ``src/b.jpg``, ``src/sub/c.jpg``, ``clip.mp4``; links ``link -> src``, ``clip-link.mp4 ->
    clip.mp4``, ``hard.mp4`` (a hard link of clip.mp4), ``src-hard.jpg`` (a hard link of src/b.jpg)."""
    (tmp_path / "src" / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        (tmp_path / "src" / name).write_bytes(name.encode() * 100)
    make_test_clip(tmp_path / "clip.mp4", size_wh=(64, 48), fps="10", frames=3, audio=False)  # predict opens it
    (tmp_path / "link").symlink_to(tmp_path / "src")
    (tmp_path / "clip-link.mp4").symlink_to(tmp_path / "clip.mp4")
    os.link(tmp_path / "clip.mp4", tmp_path / "hard.mp4")
    os.link(tmp_path / "src" / "b.jpg", tmp_path / "src-hard.jpg")
    return tmp_path


# (input, outputs, folder outputs, expected message): every row must be refused.
REFUSED = [
    ("clip.mp4", {"--out": "clip.mp4"}, (), "is the input"),
    ("clip.mp4", {"--out": "src/../clip.mp4"}, (), "is the input"),
    ("clip.mp4", {"--out": "nowhere/../clip.mp4"}, (), "is the input"),
    ("clip.mp4", {"--out": "./src/sub/../../clip.mp4"}, (), "is the input"),
    ("clip.mp4", {"--out": "clip-link.mp4"}, (), "is the input"),
    ("clip-link.mp4", {"--out": "clip.mp4"}, (), "is the input"),
    ("clip.mp4", {"--out": "hard.mp4"}, (), "hard link"),
    ("clip.mp4", {"--json": "hard.mp4"}, (), "hard link"),
    ("src", {"--out": "src"}, ("--out",), "is the input"),
    ("src", {"--out": "link"}, ("--out",), "is the input"),
    ("src", {"--out": "link/"}, ("--out",), "is the input"),
    ("src", {"--json": "src/b.jpg"}, (), "inside the input"),
    ("src", {"--json": "link/new.json"}, (), "inside the input"),
    ("src", {"--out": "src/sub"}, ("--out",), "inside the input"),
    ("src", {"--out": "src/new-folder"}, ("--out",), "inside the input"),
    ("src/sub", {"--out": "src"}, ("--out",), "holds the input"),
    ("src/a.jpg", {"--out": "src"}, ("--out",), "holds the input"),
    ("src", {"--out": "."}, ("--out",), "holds the input"),
    ("src", {"--out": "src-hard.jpg"}, (), "hard link"),
    ("clip.mp4", {"--out": "o.mp4", "--json": "o.mp4"}, (), "are the same file"),
    ("clip.mp4", {"--out": "o.mp4", "--json": "x/../o.mp4"}, (), "are the same file"),
    ("clip.mp4", {"--out": "out", "--json": "out/d.json"}, ("--out",), "inside the output folder"),
]


@pytest.mark.parametrize("source,outputs,folders,message", REFUSED)
def test_refused_and_inputs_unchanged(layout, monkeypatch, source, outputs, folders, message):
    monkeypatch.chdir(layout)
    before = tree_hash(layout)
    with pytest.raises(OutputError, match=message) as info:
        check_paths({"--source": source}, outputs, folders=folders)
    assert source in str(info.value) or "same file" in str(info.value) or "output folder" in str(info.value)
    assert tree_hash(layout) == before


ALLOWED = [
    ("clip.mp4", {"--out": "annotated.mp4", "--json": "annotated.json"}, ()),
    ("src/a.jpg", {"--out": "src/a-annotated.jpg"}, ()),  # beside a file input is fine
    ("src", {"--out": "out"}, ("--out",)),
    ("src", {"--out": "srcx"}, ("--out",)),  # a name that merely starts like the input
    ("src/sub", {"--json": "src/det.json"}, ()),  # the parent of an input, as a file
    ("rtsp://cam/1", {"--out": "rec.mp4"}, ()),
]


@pytest.mark.parametrize("source,outputs,folders", ALLOWED)
def test_allowed(layout, monkeypatch, source, outputs, folders):
    monkeypatch.chdir(layout)
    check_paths({"--source": source if not source.startswith("rtsp") else None}, outputs, folders=folders)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([".", "src", "src/sub", "link", "link/sub", "nowhere", "x/y"]), max_size=4))
def test_any_detour_to_the_input_is_refused(tmp_path_factory, detours):
    """Going down any mix of real, linked and missing folders and back up with ``..`` names the input."""
    root = tmp_path_factory.mktemp("detour")
    (root / "src" / "sub").mkdir(parents=True)
    (root / "clip.mp4").write_bytes(b"v" * 64)
    (root / "link").symlink_to(root / "src")
    path = root
    for d in detours:
        path = path / d / "/".join([".."] * len(Path(d).parts)) if d != "." else path / "."
    out = path / "clip.mp4"
    before = tree_hash(root)
    with pytest.raises(OutputError):
        check_paths({"--source": root / "clip.mp4"}, {"--out": out})
    assert tree_hash(root) == before


# ----------------------------------------------------------------------------- ownership
def test_owned_dir_replaces_only_its_own_folder(tmp_path):
    out = tmp_path / "out"
    with owned_dir(out, "data convert") as tmp:
        (tmp / "a.txt").write_text("1")
    assert json.loads((out / MARKER).read_text()) == {"command": "data convert", "files": ["a.txt"]}
    with owned_dir(out, "data convert") as tmp:  # ours: replaced
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.txt"]


@pytest.mark.parametrize("files,message", [
    ({"manifest.json": "{}"}, "was not made by"),  # any manifest.json is not a marker
    ({MARKER: json.dumps({"command": "data inspect", "files": []}), "x": "x"}, "was not made by"),
    ({MARKER: json.dumps({"command": "data convert", "files": ["a"]}), "a": "a", "notes.txt": "mine"}, "notes.txt"),
    ({MARKER: "not json", "a": "a"}, "was not made by"),
    ({"thesis.tex": "precious"}, "was not made by"),
])
def test_owned_dir_refuses_what_is_not_ours(tmp_path, files, message):
    out = tmp_path / "out"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    before = tree_hash(out)
    with pytest.raises(OutputError, match=message):
        with owned_dir(out, "data convert") as tmp:
            (tmp / "new").write_text("new")
    assert tree_hash(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial left behind


def test_shared_folder_keeps_other_files_and_replaces_ours(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    check_new_files(out, ["a.jpg"], "predict")
    (out / "a.jpg").write_bytes(b"1")
    record_files(out, ["a.jpg"], "predict")
    check_new_files(out, ["a.jpg", "b.jpg"], "predict")  # a.jpg is ours now
    with pytest.raises(OutputError, match="notes.txt"):
        check_new_files(out, ["notes.txt"], "predict")
    assert (out / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- stale partials
def test_stale_partials_of_dead_runs_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "data"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale_dir = tmp_path / f".data.{dead_pid}-abcd1234.partial"
    stale_dir.mkdir()
    (stale_dir / "train.tfrecord").write_bytes(b"x" * 1000)
    stale_old = tmp_path / ".data.k3j4h5g6.partial"  # the pid-less name of earlier versions
    stale_old.mkdir()
    live = make_partial(target, is_dir=True)  # this process: alive, kept
    other = tmp_path / f".database.{dead_pid}-abcd1234.partial"  # another output's partial: kept
    other.mkdir()
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "x").write_text("x")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert stale_dir.name not in names and stale_old.name not in names
    assert live.name in names and other.name in names and "data" in names


def test_a_swap_killed_half_way_is_undone(tmp_path):
    target = tmp_path / "data"
    old = tmp_path / ".data.old"
    old.mkdir()
    (old / "train.tfrecord").write_text("previous output")
    remove_stale_partials(target)
    assert (target / "train.tfrecord").read_text() == "previous output" and not old.exists()


# ----------------------------------------------------------------------------- the commands
def test_predict_refuses_before_loading_any_model(layout):
    """No model exists at --model: the refusal must come first."""
    clip, before = layout / "clip.mp4", tree_hash(layout)
    cases = [
        (["--source", str(clip), "--out", str(clip)], "is the input"),
        (["--source", str(clip), "--out", str(layout / "src" / ".." / "clip.mp4")], "is the input"),
        (["--source", str(layout / "src"), "--out", str(layout / "src")], "is the input"),
        (["--source", str(layout / "src"), "--json", str(layout / "src" / "b.jpg")], "inside the input"),
        (["--source", str(clip), "--out", str(layout / "o.mp4"), "--json", str(layout / "o.mp4")], "same file"),
    ]
    for args, message in cases:
        result = run_cli("predict", "--model", str(layout / "no-model"), *args, timeout=120)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    assert tree_hash(layout) == before


def test_convert_refuses_its_source_an_earlier_output_with_notes_and_foreign_folders(tmp_path):
    from maskdetect.data import convert

    src = tmp_path / "voc"
    (src / "annotations").mkdir(parents=True)
    (src / "images").mkdir()
    for stem in ("maksssksksss13", "maksssksksss52"):
        (src / "annotations" / f"{stem}.xml").write_bytes((SAMPLE / "annotations" / f"{stem}.xml").read_bytes())
        (src / "images" / f"{stem}.jpg").write_bytes((SAMPLE / "images" / f"{stem}.jpg").read_bytes())
    (src / "manifest.json").write_text("{}")  # a source folder that happens to hold a manifest.json
    ext = tmp_path / "browser-extension"
    ext.mkdir()
    (ext / "manifest.json").write_text('{"manifest_version": 3}')
    (ext / "background.js").write_text("chrome.runtime")
    before_src, before_ext = tree_hash(src), tree_hash(ext)
    with pytest.raises(OutputError, match="is the input"):
        convert("voc", src, src)
    with pytest.raises(OutputError, match="inside the input"):
        convert("voc", src, src / "tfrecords")
    with pytest.raises(OutputError, match="was not made by"):
        convert("voc", src, ext)
    out = tmp_path / "data"
    convert("voc", src, out, split=(1, 0, 0))
    (out / "notes.md").write_text("my notes")
    (out / "report").mkdir()
    (out / "report" / "report.json").write_text("{}")
    before_out = tree_hash(out)
    with pytest.raises(OutputError, match="notes.md"):
        convert("voc", src, out, split=(1, 0, 0))
    assert (tree_hash(src), tree_hash(ext), tree_hash(out)) == (before_src, before_ext, before_out)
    (out / "notes.md").unlink()
    import shutil

    shutil.rmtree(out / "report")
    convert("voc", src, out, split=(1, 0, 0))  # our own earlier output alone: replaced
    assert isinstance(OutputError("x"), ConfigError)


def test_inspect_refuses_to_write_inside_its_input(tmp_path):
    from maskdetect.data import inspect

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tfrecord").write_bytes(b"")
    before = tree_hash(data)
    for out in (data, data / "report", tmp_path):
        with pytest.raises(OutputError):
            inspect(data, out=out)
    assert tree_hash(data) == before


def test_a_convert_killed_with_sigkill_leaves_a_partial_the_next_run_removes(tmp_path):
    import signal
    import subprocess
    import sys

    from maskdetect.data import convert

    out = tmp_path / "data"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from maskdetect.fileio import atomic_path\n"
        "with atomic_path(sys.argv[1], is_dir=True) as tmp:\n"
        "    (tmp / 'train-00000-of-00001.tfrecord').write_bytes(os.urandom(1 << 20))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"), str(out)])
    assert killed.returncode == -signal.SIGKILL
    (partial,) = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    convert("voc", SAMPLE, out, split=(1, 0, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
