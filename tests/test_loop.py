"""The frame loop (maskdetect.infer.loop): a stub detector for the plumbing, the real tiny export (TFLite) end to
end on images, video files and live sources. The sinks have their own tests (test_sinks.py)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import maskdetect
from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, OutputError, VideoError
from maskdetect.guard import MARKER
from maskdetect.infer.loop import FrameObserver, predict_source, run_loop
from maskdetect.infer.sinks import JsonSink
from maskdetect.infer.sources import open_source, read_image
from clips import make_test_clip
from maskdetect.infer.video import count_frames, even_size, probe_video
from test_sources import FakeCapture

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = REPO / "sample" / "face-mask" / "images"


class OneFace:
    """A stub detector: one face without a mask, moving right one pixel per frame."""

    class_names = list(maskdetect.CLASSES)

    def __init__(self):
        self.calls = 0

    def predict(self, image):
        x = 4 + self.calls % 20
        self.calls += 1
        return Detections(xyxy=[[x, 4, x + 20, 30]], confidence=[0.9], class_id=[1])


class Recorder:
    """An observer that records what the loop hands it and may fail on a frame."""

    def __init__(self, fail_at=None, error=RuntimeError):
        self.calls, self.closed, self.fail_at, self.error = [], False, fail_at, error
        self.source_frames, self.aborted, self.started = None, False, None

    def planned_outputs(self, source, outputs):
        return {"the recorder's file": Path(outputs[0]).with_suffix(".rec")} if outputs else {}

    def start(self, source, class_names, outputs):
        assert not self.calls, "start comes before the first frame"
        self.started = (source, list(class_names), list(outputs))

    def update(self, detections, frame_index, timestamp_s=None, frame=None):
        if frame_index == self.fail_at:
            raise self.error("observer failed")
        self.calls.append((frame_index, timestamp_s, None if frame is None else frame.shape))
        return Detections(xyxy=detections.xyxy, confidence=detections.confidence, class_id=detections.class_id,
                          tracker_id=np.arange(1, len(detections) + 1))

    def banner(self, frame_index):
        return f"frame {frame_index}"

    def close(self, *, source_frames=None):
        self.closed, self.source_frames = True, source_frames
        return {"frames": len(self.calls)}

    def abort(self):
        self.aborted = True


# -- plumbing, stub detector ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    return make_test_clip(tmp_path_factory.mktemp("clips") / "small.mkv", size_wh=(64, 48), fps="25", frames=10,
                          audio=True)


def test_monitor_is_a_frame_observer():
    from maskdetect.monitor.monitor import Monitor

    assert isinstance(Monitor(), FrameObserver)
    assert isinstance(Recorder(), FrameObserver)


def test_video_loop_observes_records_draws_and_writes(small_clip, tmp_path):
    observer = Recorder()
    out, records = tmp_path / "out.mp4", tmp_path / "out.json"
    summary = predict_source(OneFace(), small_clip, out, json_path=records, monitor=observer, progress=False)
    assert (summary.kind, summary.frames, summary.detections) == ("video", 10, 10)
    assert (summary.out_path, summary.json_path, summary.monitor) == (out, records, {"frames": 10})
    assert observer.source_frames == summary.input and summary.input["frames_read"] == 10  # read vs declared
    info, names, outputs = observer.started                 # introduced before the first frame: the real rate
    assert (info.name, info.kind, info.fps, info.size_wh, info.live) == ("small", "video", 25, (64, 48), False)
    assert names == list(maskdetect.CLASSES) and outputs == [out, records] and observer.closed
    assert [c[0] for c in observer.calls] == list(range(10))                       # every frame, in order
    assert observer.calls[5][1] == pytest.approx(5 / 25) and observer.calls[0][2] == (48, 64, 3)
    data = json.loads(records.read_text())
    assert [r["frame"] for r in data] == list(range(10)) and not hasattr(summary, "records")
    assert {r["track_id"] for r in data} == {1}                                    # what the observer returned
    info = probe_video(out)
    assert count_frames(out) == 10 and info.fps == 25 and info.audio_codec == "aac"


def test_an_observer_error_aborts_every_output(small_clip, tmp_path):
    observer = Recorder(fail_at=4)
    with pytest.raises(RuntimeError, match="observer failed"):
        predict_source(OneFace(), small_clip, tmp_path / "out.mp4", json_path=tmp_path / "out.json",
                       monitor=observer, progress=False)
    assert list(tmp_path.iterdir()) == [] and observer.aborted and not observer.closed


def test_monitoring_without_outputs_writes_its_summary_to_a_default_place_and_is_ignored_for_images(
        small_clip, tmp_path, caplog):
    from maskdetect.monitor.monitor import Monitor, MonitorSettings

    monitor = Monitor(MonitorSettings(summary_dir=tmp_path / "monitor"))
    summary = predict_source(OneFace(), small_clip, monitor=monitor, display="window", progress=False)
    assert summary.frames == 10 and "the summary goes to" in caplog.text  # --show --track without a file
    assert monitor.paths["summary"].parent == tmp_path / "monitor" and monitor.paths["summary"].is_file()
    assert monitor.paths["summary"].name.startswith("small-")
    image = tmp_path / "one.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((40, 50, 3), np.uint8))
    observer = Recorder()
    with caplog.at_level("WARNING"):
        summary = predict_source(OneFace(), image, tmp_path / "drawn.png", json_path=tmp_path / "one.json",
                                 monitor=observer, progress=False)
    assert "tracking needs a video" in caplog.text and observer.calls == [] and summary.frames == 1
    assert read_image(tmp_path / "drawn.png").shape == (40, 50, 3)
    record = json.loads((tmp_path / "one.json").read_text())[0]
    assert record["image"] == "one" and "track_id" not in record


def test_the_observers_files_are_checked_with_the_outputs_before_any_work(small_clip, tmp_path):
    class Loads:
        def __call__(self):
            raise AssertionError("the model must not load")

    victim = tmp_path / "out.rec"  # what the observer would write beside out.mp4
    victim.write_text("mine")
    with pytest.raises(OutputError, match="the recorder's file"):
        predict_source(Loads(), small_clip, tmp_path / "out.mp4", monitor=Recorder(), progress=False,
                       inputs={"--model": victim})
    assert victim.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["out.rec"]


def test_records_only_draws_nothing(small_clip, tmp_path):
    class NoDrawing:
        def annotate(self, *args, **kwargs):
            raise AssertionError("nothing shows or writes images")

    summary = predict_source(OneFace(), small_clip, json_path=tmp_path / "r.json", annotator=NoDrawing(),
                             max_frames=3, progress=False)
    assert summary.frames == 3 and len(json.loads((tmp_path / "r.json").read_text())) == 3


def test_live_loop_stops_on_a_closed_window(tmp_path):
    class Window:
        needs_image, path, shown = True, None, 0

        def write(self, result):
            Window.shown += 1
            return Window.shown < 3  # the user presses q on the third frame

        def close(self):
            pass

        abort = close

    source = open_source(0, capture_factory=functools.partial(FakeCapture, limit=50, delay_s=0.01))
    summary = run_loop(OneFace(), source, [Window(), JsonSink(tmp_path / "live.json")], progress=False)
    assert summary.frames == 3 and summary.kind == "webcam"
    assert {"frame", "time_s"} <= json.loads((tmp_path / "live.json").read_text())[0].keys()


# -- the real tiny export -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Odd size, 29.97 FPS, with an audio track."""
    return make_test_clip(tmp_path_factory.mktemp("clips") / "odd.mkv", size_wh=(321, 241), fps="30000/1001",
                          frames=24, audio=True)


@pytest.mark.slow
def test_video_end_to_end_with_tracking(lite, clip, tmp_path):
    from maskdetect.monitor.monitor import Monitor, MonitorSettings

    out, records = tmp_path / "out.mp4", tmp_path / "out.json"
    monitor = Monitor(MonitorSettings(track=True))  # the loop tells it the clip's 30000/1001 FPS
    summary = predict_source(lite, clip, out, json_path=records, monitor=monitor, progress=False)
    assert summary.frames == 24 and summary.fps > 0

    info = probe_video(out)
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", probe_video(clip).fps)
    assert info.size_wh == even_size(321, 241) and info.audio_codec == "aac"
    assert count_frames(out) == 24
    data = json.loads(records.read_text())
    assert len(data) == summary.detections > 0
    assert {"frame", "bbox_xyxy", "label", "score", "track_id", "smoothed_class_id"} <= data[0].keys()
    assert sorted({r["frame"] for r in data}) == sorted(r["frame"] for r in {r["frame"]: r for r in data}.values())
    assert max(r["frame"] for r in data) <= 23
    assert json.loads((tmp_path / "out.summary.json").read_text())["fps"] == pytest.approx(30000 / 1001)


class _InterruptAt:
    def __init__(self, n):
        self.n = n

    def planned_outputs(self, source, outputs):
        return {}

    def start(self, source, class_names, outputs):
        pass

    def update(self, detections, frame_index, timestamp_s=None, frame=None):
        if frame_index == self.n:
            raise KeyboardInterrupt
        return detections

    def banner(self, frame_index):
        return None

    def close(self, *, source_frames=None):
        raise AssertionError("an interrupted run must not write summaries")

    def abort(self):
        pass


@pytest.mark.slow
def test_keyboard_interrupt_in_a_video_leaves_nothing(lite, clip, tmp_path):
    out, records = tmp_path / "out.mp4", tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt):
        predict_source(lite, clip, out, json_path=records, monitor=_InterruptAt(10), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_broken_source_raises_video_error_and_leaves_nothing(lite, clip, tmp_path):
    broken = tmp_path / "broken.mkv"
    data = clip.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # truncated: decodes a while, then stops
    out = tmp_path / "out.mp4"
    try:
        summary = predict_source(lite, broken, out, progress=False)
    except VideoError:
        assert not out.exists()
    else:  # ffmpeg may treat a truncated file as shorter: then it must be complete and consistent
        assert count_frames(out) == summary.frames
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


@pytest.mark.slow
def test_predict_source_on_images_and_folders(lite, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted(SAMPLE_IMAGES.glob("*.jpg"))[:3]:
        shutil.copyfile(p, folder / p.name)
    summary = predict_source(lite, folder, tmp_path / "annotated", json_path=tmp_path / "dets.json")
    assert summary.frames == 3
    written = sorted(p.name for p in (tmp_path / "annotated").iterdir())
    assert written == sorted([MARKER] + [p.name for p in folder.iterdir()])  # the marker: these are ours
    data = json.loads((tmp_path / "dets.json").read_text())
    assert data and set(data[0]) == {"image", "bbox_xyxy", "label", "score"}
    assert {r["image"] for r in data} <= {p.stem for p in folder.iterdir()}
    one = sorted(folder.iterdir())[0]
    predict_source(lite, one, tmp_path / "one.png")
    assert read_image(tmp_path / "one.png").shape == read_image(one).shape


class InterruptAt:
    """A monitor double that presses Ctrl-C (raises KeyboardInterrupt) on frame `n`."""

    def __init__(self, n: int) -> None:
        self.n, self.closed_with, self.times = n, None, []

    def planned_outputs(self, source, outputs):
        return {}

    def start(self, source, class_names, outputs):
        self.outputs = list(outputs)

    def update(self, detections, frame_index, timestamp_s=None, frame=None):
        if frame_index == self.n:
            raise KeyboardInterrupt
        self.times.append(timestamp_s)
        return detections

    def banner(self, frame_index):
        return f"frame {frame_index}"

    def close(self, *, source_frames=None):
        self.closed_with = self.outputs[0]

    def abort(self):
        raise AssertionError("Ctrl-C in a live source keeps the outputs")


@pytest.mark.slow
def test_a_fast_fake_camera_is_recorded_in_real_time(lite, tmp_path):
    out = tmp_path / "rec.mp4"
    clock = InterruptAt(10**6)  # never interrupts: it only notes each processed frame's capture time
    summary = predict_source(lite, 0, out, json_path=tmp_path / "rec.json", max_frames=12, display="auto",
                             capture_factory=functools.partial(FakeCapture, size_wh=(321, 241)), record_fps=25,
                             monitor=clock, progress=False)
    assert summary.frames == 12 and summary.frames_dropped > 0
    info = probe_video(out)
    assert (info.codec, info.pix_fmt, info.fps, info.size_wh) == ("h264", "yuv420p", 25, (322, 242))
    # real time: every 1/25 s slot up to the last processed frame's capture time is filled once (two frames the
    # model handled within one slot share it: a fast model on a quiet machine), so the video lasts the wall time
    frames = count_frames(out)
    assert frames == int(clock.times[-1] * 25) + 1
    assert frames / 25 == pytest.approx(summary.seconds, abs=0.5)
    import json

    records = json.loads((tmp_path / "rec.json").read_text())
    assert records and {"frame", "time_s", "bbox_xyxy", "label", "score"} <= records[0].keys()


@pytest.mark.slow
def test_ctrl_c_in_a_live_source_finalises_a_playable_recording(lite, tmp_path):
    clip = make_test_clip(tmp_path / "clip.mp4", size_wh=(320, 240), fps="30000/1001", frames=300, audio=False)
    out = tmp_path / "rec.mp4"
    monitor = InterruptAt(6)
    summary = predict_source(lite, str(clip), out, monitor=monitor, live=True, display="none", progress=False)
    assert summary.frames == 6 and monitor.closed_with == out
    info = probe_video(out)
    assert info.codec == "h264" and info.fps == probe_video(clip).fps  # a file stream records at its own rate
    # real time: the recording lasts until the last processed frame's capture time (each frame fills the slots
    # up to it), however many frames the model kept up with
    assert count_frames(out) == int(monitor.times[-1] * info.fps) + 1
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


@pytest.mark.slow
def test_a_stream_that_gives_no_frame_is_an_error(lite, tmp_path):
    with pytest.raises(VideoError, match="no frame"):
        predict_source(lite, 0, tmp_path / "rec.mp4", display="none", progress=False,
                       capture_factory=functools.partial(FakeCapture, limit=0))
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_video_is_a_warning_with_figures_and_an_error_with_strict(tmp_path, caplog):
    from maskdetect.monitor.monitor import Monitor, MonitorSettings
    from test_video_input import faststart_mp4

    data = faststart_mp4(tmp_path, frames=60).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    before = cut.read_bytes()
    monitor = Monitor(MonitorSettings(track=True))
    summary = predict_source(OneFace(), cut, tmp_path / "a.mp4", json_path=tmp_path / "a.json", monitor=monitor,
                             progress=False)
    assert summary.input["frames_declared"] == 60 and summary.input["frames_read"] == summary.frames < 60
    assert not summary.input["complete"] and "ended early" in caplog.text
    assert json.loads((tmp_path / "a.summary.json").read_text())["input"] == summary.input
    with pytest.raises(VideoError, match=f"{summary.frames} of the 60 frames.*Nothing was written"):
        predict_source(OneFace(), cut, tmp_path / "b.mp4", json_path=tmp_path / "b.json", strict=True,
                       progress=False)
    assert not (tmp_path / "b.mp4").exists() and not (tmp_path / "b.json").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    whole = predict_source(OneFace(), tmp_path / "clip.mp4", json_path=tmp_path / "c.json", strict=True,
                           progress=False)
    assert whole.input["complete"] and whole.frames == 60
    assert cut.read_bytes() == before
