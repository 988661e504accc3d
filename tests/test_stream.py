"""Live sources: newest-frame capture (fake fast sources), and the real model on a file / HTTP "stream"."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from maskdetect.errors import VideoError
from maskdetect.infer.stream import LatestFrameCapture, has_gui, in_notebook, run_stream
from maskdetect.infer.video import count_frames, make_test_clip, probe_video

REPO = Path(__file__).resolve().parents[1]


class FakeCapture:
    """A cv2.VideoCapture stand-in that produces numbered BGR frames as fast as it is asked (or `limit` of
    them), far faster than any consumer. Pixel (0, 0) holds the frame number modulo 256."""

    def __init__(self, source, *, limit: int | None = None, size_wh=(64, 48), fps: float = 30.0,
                 delay_s: float = 0.0) -> None:
        self.source, self.limit, self.size_wh, self.fps, self.delay_s = source, limit, size_wh, fps, delay_s
        self.count = 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.source != "closed"

    def get(self, prop) -> float:
        import cv2

        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.limit is not None and self.count >= self.limit:
            return False, None
        if self.delay_s:
            time.sleep(self.delay_s)
        width, height = self.size_wh
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 1] = 100
        frame[0, 0, 0] = self.count % 256
        self.count += 1
        return True, frame

    def release(self) -> None:
        self.released = True


def test_capture_hands_over_the_newest_frame_and_drops_stale_ones():
    fake = {}

    def factory(source):
        fake["capture"] = FakeCapture(source, delay_s=0.001)
        return fake["capture"]

    seen = []
    with LatestFrameCapture("fake://cam", capture_factory=factory) as capture:
        for _ in range(10):
            index, frame, stamp = capture.read(timeout=5)
            assert frame.shape == (48, 64, 3) and frame[0, 0, 1] == 100  # BGR -> RGB: green stays green
            assert frame[0, 0, 2] == index % 256                          # the frame number is in (what was) B
            seen.append(index)
            time.sleep(0.03)                                             # a slow consumer
            lag = capture.frames_read - 1 - index
            assert lag < 40, "the lag must not grow"
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[-1] - seen[0] > 20, "frames produced while we were busy must be skipped"
    assert capture.frames_dropped > 20
    assert fake["capture"].released


def test_capture_ends_with_the_source():
    with LatestFrameCapture(0, capture_factory=functools.partial(FakeCapture, limit=3)) as capture:
        items = []
        while (item := capture.read(timeout=5)) is not None:
            items.append(item[0])
            time.sleep(0.01)
    assert 1 <= len(items) <= 3 and items[-1] == 2
    assert capture.fps == 30.0


def test_capture_that_cannot_open_names_the_source_without_its_password():
    with pytest.raises(VideoError) as caught:
        LatestFrameCapture("closed", capture_factory=FakeCapture).start()
    assert "closed" in str(caught.value)
    with pytest.raises(VideoError) as caught:
        LatestFrameCapture("rtsp://admin:Hunter2@127.0.0.1:9/none").start()
    assert "Hunter2" not in str(caught.value) and "rtsp://***@127.0.0.1:9/none" in str(caught.value)


@pytest.mark.slow
def test_a_stream_that_gives_no_frame_is_an_error(predictor, tmp_path):
    with pytest.raises(VideoError, match="no frame"):
        run_stream(predictor, 0, record_path=tmp_path / "rec.mp4", display="none", progress=False,
                   capture_factory=functools.partial(FakeCapture, limit=0))
    assert list(tmp_path.iterdir()) == []


def test_capture_times_out_when_no_frame_comes():
    with LatestFrameCapture(0, capture_factory=functools.partial(FakeCapture, delay_s=5)) as capture:
        with pytest.raises(VideoError, match="no frame"):
            capture.read(timeout=0.2)


def test_capture_reads_a_real_file_at_its_pace(tmp_path):
    clip = make_test_clip(tmp_path / "clip.mp4", size_wh=(160, 120), fps="25", frames=25, audio=False)
    started = time.monotonic()
    with LatestFrameCapture(str(clip), pace_fps=25) as capture:
        indices = []
        while (item := capture.read(timeout=5)) is not None:
            indices.append(item[0])
    assert time.monotonic() - started >= 0.9          # 25 frames at 25 FPS take about a second
    assert indices[-1] == 24 and indices == sorted(indices)
    assert capture.frames_dropped == 25 - len(indices)


def test_headless_here():
    assert has_gui() is False  # opencv-python-headless: no window, run_stream(display="auto") shows nothing
    assert in_notebook() is False


# -- with the real tiny model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor(tiny_export):
    from maskdetect.infer.predictor import Predictor

    return Predictor(tiny_export.tflite, threshold=0.0)


class InterruptAt:
    """A monitor double that presses Ctrl-C (raises KeyboardInterrupt) on frame `n`."""

    def __init__(self, n: int) -> None:
        self.n, self.closed_with = n, None

    def update(self, detections, frame_index, timestamp_s):
        if frame_index == self.n:
            raise KeyboardInterrupt
        return detections

    def banner(self, frame_index):
        return f"frame {frame_index}"

    def close(self, out_path):
        self.closed_with = out_path


@pytest.mark.slow
def test_run_stream_records_a_fast_fake_camera_in_real_time(predictor, tmp_path):
    out = tmp_path / "rec.mp4"
    summary = run_stream(predictor, 0, record_path=out, json_path=tmp_path / "rec.json", max_frames=12,
                         display="auto", capture_factory=functools.partial(FakeCapture, size_wh=(321, 241)),
                         record_fps=25, progress=False)
    assert summary.frames == 12 and summary.frames_dropped > 0
    info = probe_video(out)
    assert (info.codec, info.pix_fmt, info.fps, info.size_wh) == ("h264", "yuv420p", 25, (322, 242))
    frames = count_frames(out)
    assert frames >= 12                                     # each processed frame at least once ...
    assert frames / 25 == pytest.approx(summary.seconds, abs=0.5)  # ... and as long as the wall time
    import json

    records = json.loads((tmp_path / "rec.json").read_text())
    assert records and {"frame", "time_s", "bbox_xyxy", "label", "score"} <= records[0].keys()


@pytest.mark.slow
def test_ctrl_c_in_process_finalises_a_playable_recording(predictor, tmp_path):
    clip = make_test_clip(tmp_path / "clip.mp4", size_wh=(320, 240), fps="30000/1001", frames=300, audio=False)
    out = tmp_path / "rec.mp4"
    monitor = InterruptAt(6)
    summary = run_stream(predictor, str(clip), record_path=out, monitor=monitor, display="none", progress=False)
    assert summary.frames == 6 and monitor.closed_with == out
    info = probe_video(out)
    assert info.codec == "h264" and info.fps == probe_video(clip).fps  # a file stream records at its own rate
    assert count_frames(out) >= 6
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files like a live stream: at most ~100 KB/s, so the client cannot read to the end at once."""

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        while chunk := source.read(16 * 1024):
            outputfile.write(chunk)
            time.sleep(0.16)


@pytest.mark.slow
def test_cli_on_an_http_stream_with_a_password_stops_cleanly_on_sigint(tiny_export, tmp_path):
    # MPEG-TS: streamable over plain HTTP (an MP4 needs range requests to reach its index)
    clip = make_test_clip(tmp_path / "live.ts", size_wh=(320, 240), fps="25", frames=3000, audio=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://viewer:S3cretPass@127.0.0.1:{server.server_address[1]}/live.ts"
    out = tmp_path / "rec.mp4"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "maskdetect", "-v", "predict", "--model", str(tiny_export.tflite),
                             "--source", url, "--out", str(out), "--json", str(tmp_path / "rec.json")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # wait until encoded frames reach the partial file (a loaded machine may take a while to get there)
        while not [p for p in tmp_path.iterdir() if ".partial" in p.name and p.stat().st_size > 0]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the recording never started"
            time.sleep(0.2)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.shutdown()
    assert proc.returncode == 0, stderr[-2000:]
    assert "S3cretPass" not in stdout + stderr
    assert "***@127.0.0.1" in stdout
    info = probe_video(out)
    assert info.codec == "h264" and count_frames(out) > 0
    assert (tmp_path / "rec.json").is_file()
