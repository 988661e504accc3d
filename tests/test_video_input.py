"""A video file that ends before the frames it declares (a copy cut short, a download stopped half-way) is
noticed: frames read vs declared, ffmpeg's complaints, a warning, and an error with --strict."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from clips import make_test_clip
from maskdetect.infer.video import VideoReader, check_input, ffmpeg_exe, probe_video


def faststart_mp4(tmp_path, frames: int = 120):
    """An MP4 with its index first (as phones and our own writer make them), so a prefix of it still plays."""
    raw = make_test_clip(tmp_path / "raw.mkv", size_wh=(320, 240), fps="25", frames=frames, audio=True)
    mp4 = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(raw), "-c", "copy", "-movflags", "+faststart",
                    str(mp4)], check=True)
    return mp4


def decode(path, max_frames=None):
    reader = VideoReader(path, max_frames=max_frames)
    count = sum(1 for _ in reader)
    return check_input(path, probe_video(path), count, max_frames=max_frames, decoder_messages=reader.messages)


@pytest.mark.parametrize("keep", [1.0, 0.6, 0.3])
def test_frames_read_vs_declared(tmp_path, keep):
    mp4 = faststart_mp4(tmp_path)
    source = mp4 if keep == 1.0 else tmp_path / "cut.mp4"
    if keep < 1.0:
        data = mp4.read_bytes()
        source.write_bytes(data[: int(len(data) * keep)])
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    checked = decode(source)
    assert checked.frames_declared == 120
    if keep == 1.0:
        assert checked.complete and checked.frames_read == 120 and not checked.decoder_messages
    else:
        assert not checked.complete and checked.frames_read < 120
        assert f"{checked.frames_read} of the 120 frames" in checked.message and "cut.mp4" in checked.message
    assert checked.to_dict()["frames_read"] == checked.frames_read
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest


def test_max_frames_is_not_truncation(tmp_path):
    checked = decode(faststart_mp4(tmp_path), max_frames=10)
    assert checked.complete and checked.frames_read == checked.frames_declared == 10
