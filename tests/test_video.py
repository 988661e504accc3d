"""Video I/O through ffmpeg, checked by probing the real output (PyAV metadata, frames counted by decoding)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from clips import make_test_clip
from maskdetect.errors import ConfigError, VideoError
from maskdetect.infer.video import (Encoder, VideoReader, VideoWriter, count_frames, even_size, parse_rate,
                                    probe_video, read_frames)


def decode_rgb(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def stream_durations(path: Path) -> dict[str, float]:
    import av

    with av.open(str(path)) as container:
        return {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration is not None}


def top_level_atoms(path: Path) -> list[str]:
    atoms, data = [], path.read_bytes()
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        atoms.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8:
            break
        pos += size
    return atoms


def assert_not_blank(frame: np.ndarray) -> None:
    assert frame.std() > 10 and 5 < frame.mean() < 250, "frame looks blank"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# -- small pure helpers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("30000/1001", Fraction(30000, 1001)),
    ("29.97", Fraction(30000, 1001)),
    (29.97, Fraction(30000, 1001)),
    ("23.976", Fraction(24000, 1001)),
    (25, Fraction(25)),
    ("12.5", Fraction(25, 2)),
    (Fraction(60), Fraction(60)),
])
def test_parse_rate_is_exact(value, expected):
    assert parse_rate(value) == expected


@pytest.mark.parametrize("value", ["0", "-5", "0/1"])
def test_parse_rate_rejects_non_positive(value):
    with pytest.raises(VideoError):
        parse_rate(value)


@pytest.mark.parametrize("size, expected", [((320, 240), (320, 240)), ((321, 241), (322, 242)),
                                            ((641, 360), (642, 360)), ((1, 1), (2, 2))])
def test_even_size_pads(size, expected):
    assert even_size(*size) == expected


# -- the writer, probed for real ----------------------------------------------------------------------------
CLIPS = [
    # (width, height, rate, frames, audio)
    pytest.param(321, 241, "30000/1001", 45, True, id="odd-29.97-audio"),
    pytest.param(320, 240, "25", 30, False, id="even-25-silent"),
    pytest.param(322, 181, "24000/1001", 30, True, id="odd-height-23.976-audio"),
]


@pytest.mark.parametrize("width, height, rate, frames, audio", CLIPS)
def test_reencode_keeps_count_rate_duration_audio_and_order(tmp_path, width, height, rate, frames, audio):
    source = make_test_clip(tmp_path / "in.mkv", size_wh=(width, height), fps=rate, frames=frames, audio=audio)
    info = probe_video(source)
    assert (info.width, info.height, info.fps, info.has_audio) == (width, height, parse_rate(rate), audio)
    source_frames = list(read_frames(source))
    assert len(source_frames) == frames

    out = tmp_path / "out.mp4"
    with VideoWriter(out, info.fps, info.size_wh, audio_from=source, audio_duration_s=frames / info.fps) as sink:
        for frame in source_frames:
            sink.write(frame)

    probed = probe_video(out)
    assert probed.codec == "h264" and probed.pix_fmt == "yuv420p"
    assert probed.fps == parse_rate(rate)                        # exact rational, not 29.97 or 30
    assert (probed.width, probed.height) == even_size(width, height)
    assert count_frames(out) == frames                            # every frame once: none dropped or doubled
    durations = stream_durations(out)
    assert durations["video"] == pytest.approx(frames / float(parse_rate(rate)), abs=1e-3)
    assert probed.has_audio == audio
    if audio:
        assert probed.audio_codec == "aac"
        assert durations["audio"] == pytest.approx(durations["video"], abs=0.05)
    assert top_level_atoms(out).index("moov") < top_level_atoms(out).index("mdat")  # +faststart

    decoded = decode_rgb(out)
    assert_not_blank(decoded[0])
    assert_not_blank(decoded[-1])
    for i in (0, frames // 2, frames - 1):                       # in order: frame i is source frame i
        crop = decoded[i][:height, :width].astype(int)
        assert np.abs(crop - source_frames[i]).mean() < 6, i
        others = [j for j in (0, frames // 2, frames - 1) if j != i]
        assert all(np.abs(crop - source_frames[j]).mean() > np.abs(crop - source_frames[i]).mean() for j in others)
    if width % 2:  # padding is black on the right (4:2:0 chroma of the last real column bleeds in a little)
        assert decoded[0][:, -1].mean() < 60 < decoded[0][:, -3].mean()


def test_reader_honours_max_frames_and_stops_ffmpeg(tmp_path):
    source = make_test_clip(tmp_path / "in.mp4", size_wh=(160, 120), frames=40, audio=False)
    with VideoReader(source, max_frames=7) as reader:
        frames = list(reader)
    assert len(frames) == 7 and frames[0].shape == (120, 160, 3) and frames[0].dtype == np.uint8
    reader = VideoReader(source)
    first = next(iter(reader))  # stop early: close() must kill ffmpeg, not hang
    reader.close()
    assert first.shape == (120, 160, 3)


def test_one_decoder_thread_gives_the_same_frames(tmp_path):
    source = make_test_clip(tmp_path / "in.mp4", size_wh=(160, 120), frames=12, audio=False)
    default, single = list(VideoReader(source)), list(VideoReader(source, threads=1))
    assert len(default) == len(single) == 12
    assert all(np.array_equal(a, b) for a, b in zip(default, single))


def test_probe_rejects_missing_and_non_video(tmp_path):
    with pytest.raises(VideoError, match="no such video"):
        probe_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError):
        probe_video(bad)


def test_ffmpeg_failure_raises_with_its_message_and_leaves_nothing(tmp_path):
    out = tmp_path / "out.mp4"
    broken = object.__new__(Encoder)  # past Encoder's own check, so that ffmpeg itself fails
    object.__setattr__(broken, "crf", 23)
    object.__setattr__(broken, "preset", "no-such-preset")
    with pytest.raises(VideoError, match="(?i)preset|ffmpeg"):
        with VideoWriter(out, 25, (64, 48), encoder=broken) as sink:
            for _ in range(50):
                sink.write(np.zeros((48, 64, 3), np.uint8))
    assert not out.exists() and leftovers(tmp_path) == []


def test_reader_error_on_a_url_never_shows_the_password(tmp_path):
    url = "http://viewer:TopSecret99@127.0.0.1:9/live.mp4"  # port 9: connection refused at once
    with pytest.raises(VideoError) as caught:
        list(VideoReader(url, size_wh=(64, 48)))
    assert "TopSecret99" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)


def test_wrong_frame_shape_is_refused(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match="takes \\(48, 64, 3\\)"):
        with VideoWriter(out, 25, (64, 48)) as sink:
            sink.write(np.zeros((48, 65, 3), np.uint8))
    assert not out.exists() and leftovers(tmp_path) == []


def test_keyboard_interrupt_in_process_leaves_no_file(tmp_path):
    out = tmp_path / "out.mp4"
    out_before = tmp_path / "keep.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, "30000/1001", (321, 241)) as sink:
            for i in range(20):
                sink.write(np.full((241, 321, 3), i * 10, np.uint8))
            raise KeyboardInterrupt
    assert not out.exists() and leftovers(tmp_path) == [] and not out_before.exists()


def test_existing_output_survives_a_failed_rewrite(tmp_path):
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 25, (64, 48)) as sink:
        for _ in range(5):
            sink.write(np.full((48, 64, 3), 128, np.uint8))
    before = out.read_bytes()
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 25, (64, 48)) as sink:
            sink.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert out.read_bytes() == before and count_frames(out) == 5


def test_sigkill_mid_write_leaves_no_file_under_the_final_name(tmp_path):
    out = tmp_path / "killed.mp4"
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from maskdetect.infer.video import VideoWriter
        with VideoWriter({str(out)!r}, "30000/1001", (321, 241)) as sink:
            i = 0
            while True:
                sink.write(np.full((241, 321, 3), i % 255, np.uint8))
                i += 1
                if i == 30:
                    print("writing", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.3)
        assert leftovers(tmp_path), "the writer should be writing to a temporary name"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)  # ffmpeg sees EOF on its stdin and exits
    assert not out.exists()


# -- the sample video ---------------------------------------------------------------------------------------
def test_sample_video_is_exactly_predictable(tmp_path):
    import cv2

    from maskdetect.sample_video import SAMPLE_FPS, SAMPLE_SIZE_WH, make_sample_video, sample_frame_count

    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (800, 600), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "image.jpg"), image)
    out = make_sample_video(tmp_path / "image.jpg", tmp_path / "sample.mp4", seconds=2)

    frames = sample_frame_count(2, SAMPLE_FPS)
    assert frames == 60
    info = probe_video(out)
    assert (info.fps, info.codec, info.pix_fmt, info.has_audio) == (SAMPLE_FPS, "h264", "yuv420p", False)
    assert info.size_wh == even_size(*SAMPLE_SIZE_WH) == (642, 362)
    assert count_frames(out) == frames
    assert stream_durations(out)["video"] == pytest.approx(frames / float(SAMPLE_FPS), abs=1e-3)
    decoded = decode_rgb(out)
    assert_not_blank(decoded[0])
    assert_not_blank(decoded[-1])
    assert np.abs(decoded[0].astype(int) - decoded[-1]).mean() > 10  # it moves
    assert sample_frame_count(4) == 120


@pytest.mark.parametrize("crf, preset", [(-1, "ultrafast"), (52, "ultrafast"), (2.5, "ultrafast"), (23, "fastest")])
def test_encoder_settings_are_checked(crf, preset):
    with pytest.raises(ConfigError, match="crf|preset"):
        Encoder(crf=crf, preset=preset)
    assert Encoder() == Encoder(23, "ultrafast")  # the one default of every video written


def test_the_output_suffix_names_the_container_or_is_refused(tmp_path):
    with VideoWriter(tmp_path / "out.avi", 10, (64, 48)) as sink:
        for _ in range(3):
            sink.write(np.zeros((48, 64, 3), np.uint8))
    assert (tmp_path / "out.avi").read_bytes()[:4] == b"RIFF" and probe_video(tmp_path / "out.avi").codec == "h264"
    for name in ("out.webm", "out.gif", "out"):
        with pytest.raises(ConfigError, match="H.264 in .mp4"):
            VideoWriter(tmp_path / name, 10, (64, 48))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.avi"]
