"""Frame sources (maskdetect.infer.sources): what a source string means, newest-frame capture on fake fast
cameras, video files decoded ahead, image files, and the camera adapter. No model."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from maskdetect.errors import DataError, VideoError
from maskdetect.infer.sources import (CameraFrames, ImageFiles, LatestFrameCapture, LiveCapture, VideoFile, open_source,
                                      source_kind)
from clips import make_test_clip


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


# -- what a source is ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("source, kind", [
    (0, "webcam"), ("1", "webcam"),
    ("rtsp://u:p@cam/1", "stream"), ("HTTP://cam/video.mjpg", "stream"), ("https://x/y.m3u8", "stream"),
])
def test_source_kind_of_live_sources(source, kind):
    assert source_kind(source) == kind


@pytest.mark.parametrize("name, kind", [("a.JPG", "image"), ("b.png", "image"), ("c.mp4", "video"),
                                        ("d.mkv", "video"), ("e.avi", "video")])
def test_source_kind_of_files(tmp_path, name, kind):
    (tmp_path / name).write_bytes(b"x")
    assert source_kind(tmp_path / name) == kind
    assert source_kind(tmp_path) == "folder"


@pytest.mark.parametrize("name, message", [("missing.jpg", "no such file"), ("notes.txt", "unknown file type")])
def test_source_kind_errors(tmp_path, name, message):
    if name == "notes.txt":
        (tmp_path / name).write_text("x")
    with pytest.raises(DataError, match=message):
        source_kind(tmp_path / name)


# -- live capture --------------------------------------------------------------------------------------------
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


# -- opening sources ------------------------------------------------------------------------------------------
def test_open_source_picks_the_source_and_its_rate(tmp_path):
    clip = make_test_clip(tmp_path / "clip.mkv", size_wh=(64, 48), fps="30000/1001", frames=12, audio=False)
    video = open_source(clip, max_frames=5)
    assert isinstance(video, VideoFile) and not video.live and video.total == 5 and video.name == "clip"
    frames = list(video)
    video.close()
    assert [f.index for f in frames] == list(range(5)) and frames[0].image.shape == (48, 64, 3)
    assert frames[3].tag == {"frame": 3} and frames[3].time_s == pytest.approx(3 * 1001 / 30000)
    live = open_source(str(clip), live=True)  # a file played as a camera: paced, newest frame only
    try:
        assert isinstance(live, LiveCapture) and live.live and live.fps == video.fps and live.kind == "stream"
        first = next(iter(live))
        assert first.time_s == 0 and set(first.tag) == {"frame", "time_s"}
    finally:
        live.close()
    cam = open_source(0, capture_factory=functools.partial(FakeCapture, limit=2))
    assert cam.kind == "webcam" and cam.name == "webcam" and cam.fps == 30
    assert len(list(cam)) >= 1
    cam.close()
    assert open_source(cam) is cam


def test_image_files_in_name_order_with_their_stems(tmp_path):
    import cv2

    for name in ("b.png", "a.jpg", ".hidden.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 10, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    source = open_source(tmp_path)
    assert isinstance(source, ImageFiles) and source.kind == "folder" and source.fps is None and source.total == 2
    assert [(f.name, f.tag) for f in source] == [("a.jpg", {"image": "a"}), ("b.png", {"image": "b"})]
    (tmp_path / "a.png").write_bytes((tmp_path / "b.png").read_bytes())
    with pytest.raises(DataError, match="share the stem"):
        open_source(tmp_path)


def test_a_broken_video_raises_from_the_reader_thread(tmp_path):
    clip = make_test_clip(tmp_path / "clip.mkv", size_wh=(64, 48), fps="25", frames=50, audio=False)
    data = clip.read_bytes()
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(data[: len(data) // 2])
    source = VideoFile(broken)
    try:
        frames = list(source)  # ffmpeg may read a truncated file as a shorter one ...
    except VideoError:
        pass  # ... or fail: then the reader's error reaches the consumer
    else:
        assert 0 < len(frames) < 50
    finally:
        source.close()


def test_camera_frames_are_timed_and_the_camera_released_on_close():
    class Camera:
        released = False

        def frames(self):
            try:
                for i in range(100):
                    yield np.full((4, 6, 3), i, np.uint8)
            finally:
                Camera.released = True

    source = CameraFrames(Camera(), fps=10)
    assert source.live and source.fps == 10
    iterator = iter(source)
    first, second = next(iterator), next(iterator)
    assert (first.index, second.index) == (0, 1) and 0 <= first.time_s <= second.time_s
    assert second.tag["frame"] == 1 and int(second.image[0, 0, 0]) == 1
    source.close()
    assert Camera.released


def test_images_in_memory_are_a_source():
    images = [np.zeros((4, 6, 3), np.uint8), np.ones((5, 7, 3), np.uint8)]
    source = open_source(images)
    assert source.kind == "images" and source.fps is None and source.total == 2
    frames = list(source)
    assert [(f.name, f.tag) for f in frames] == [("image-0000.jpg", {"image": "image-0000"}),
                                                 ("image-0001.jpg", {"image": "image-0001"})]
    assert frames[1].image.shape == (5, 7, 3)
