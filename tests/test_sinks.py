"""The outputs of the frame loop (maskdetect.infer.sinks): the H.264 sink's real-time slots, the streamed JSON,
windows, annotated image folders, where --out puts things, and the one check of every output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clips import make_test_clip
from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, OutputError
from maskdetect.guard import MARKER
from maskdetect.infer.loop import predict_source
from maskdetect.infer.sinks import (DisplaySink, FrameResult, JsonSink, VideoSink, check_outputs, has_gui, in_notebook,
                                    open_sinks, opencv_has_gui, output_path, why_no_window)
from maskdetect.infer.sources import Frame, open_source
from maskdetect.infer.video import count_frames, probe_video
from test_loop import SAMPLE_IMAGES, OneFace


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    return make_test_clip(tmp_path_factory.mktemp("clips") / "small.mkv", size_wh=(64, 48), fps="25", frames=6,
                          audio=False)


def test_live_video_fills_real_time_slots(tmp_path):
    sink = VideoSink(tmp_path / "rt.mp4", 10, realtime=True)
    image = np.zeros((24, 32, 3), np.uint8)
    for index, time_s in enumerate([0.0, 0.35, 0.36, 1.0]):  # slots: 1, 3 more, none (already covered), 6 more
        sink.write(FrameResult(Frame(image, index, time_s), Detections.empty(), annotated=image))
    sink.close()
    assert count_frames(tmp_path / "rt.mp4") == 11


def records_of(frame: int, n: int) -> FrameResult:
    detections = Detections(xyxy=[[1, 2, 3, 4]] * n, confidence=[0.5] * n, class_id=[0] * n)
    return FrameResult(Frame(np.zeros((4, 4, 3), np.uint8), frame), detections,
                       detections.to_records(["with_mask"], frame=frame))


def test_json_records_are_streamed_to_a_partial_file_and_renamed(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text('["the previous run"]')
    sink = JsonSink(path)
    sink.write(records_of(0, 2))
    partial = [p for p in tmp_path.iterdir() if ".partial" in p.name]
    assert len(partial) == 1 and partial[0].name.startswith(".dets.json.")  # records go to disk as they come
    sink.write(records_of(1, 0))
    sink.write(records_of(2, 1))
    assert json.loads(path.read_text()) == ["the previous run"]  # untouched until the end
    sink.close()
    data = json.loads(path.read_text())
    assert [r["frame"] for r in data] == [0, 0, 2] and not hasattr(sink, "records")
    assert [p.name for p in tmp_path.iterdir()] == ["dets.json"]


def test_json_abort_keeps_the_previous_file_and_no_records_is_an_empty_list(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text("[1]")
    sink = JsonSink(path)
    sink.write(records_of(0, 3))
    sink.abort()
    assert path.read_text() == "[1]" and [p.name for p in tmp_path.iterdir()] == ["dets.json"]
    empty = JsonSink(tmp_path / "none.json")
    empty.write(records_of(0, 0))
    empty.close()
    assert json.loads((tmp_path / "none.json").read_text()) == []


def test_out_with_a_trailing_slash_is_a_folder_and_a_video_suffix_is_honoured_or_refused(small_clip, tmp_path):
    video = open_source(small_clip)
    try:
        assert output_path(video, f"{tmp_path}/results/") == tmp_path / "results" / "small.mp4"
        assert output_path(video, tmp_path) == tmp_path / "small.mp4"  # an existing folder
        assert output_path(video, tmp_path / "x.avi") == tmp_path / "x.avi"
        for name in ("x.webm", "x.gif", "folder"):
            with pytest.raises(ConfigError, match="H.264 in .mp4"):
                output_path(video, tmp_path / name)
    finally:
        video.close()
    summary = predict_source(OneFace(), small_clip, f"{tmp_path}/results/", progress=False)
    assert summary.out_path == tmp_path / "results" / "small.mp4" and count_frames(summary.out_path) == 6
    avi = predict_source(OneFace(), small_clip, tmp_path / "clip.avi", progress=False).out_path
    assert avi.read_bytes()[:4] == b"RIFF" and probe_video(avi).codec == "h264"  # AVI bytes under .avi
    one = sorted(SAMPLE_IMAGES.glob("*.jpg"))[0]
    summary = predict_source(OneFace(), one, f"{tmp_path}/pictures.jpg/", progress=False)
    assert (tmp_path / "pictures.jpg" / one.name).is_file()  # a folder, though its name looks like an image


def test_a_glob_source_writes_each_image_and_refuses_outputs_over_them(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted(SAMPLE_IMAGES.glob("*.jpg"))[:2]:
        shutil.copyfile(p, folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    summary = predict_source(OneFace(), f"{folder}/*.jpg", tmp_path / "out", json_path=tmp_path / "d.json",
                             progress=False)
    assert summary.frames == 2 and summary.kind == "images"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([MARKER, *(p.name for p in
                                                                                     folder.glob("*.jpg"))])
    victim = sorted(folder.glob("*.jpg"))[0]
    with pytest.raises(OutputError, match="is the input"):
        predict_source(OneFace(), f"{folder}/*.jpg", json_path=victim, progress=False)


def test_show_on_a_file_adds_a_display_and_auto_does_not(small_clip):
    video = open_source(small_clip)
    try:
        assert [type(s).__name__ for s in open_sinks(video, display="window")] == ["DisplaySink"]
        assert open_sinks(video) == []
    finally:
        video.close()


def test_check_outputs_is_the_one_check_and_open_sinks_checks_nothing(small_clip, tmp_path):
    video = open_source(small_clip)
    try:
        with pytest.raises(OutputError, match="is the input --source"):
            check_outputs(video, small_clip, None)
        with pytest.raises(OutputError, match="--model"):
            check_outputs(video, tmp_path / "o.mp4", tmp_path / "m.json", inputs={"--model": tmp_path / "m.json"})
        open_sinks(video, tmp_path / "o.mp4", tmp_path / "m.json")  # nothing opened yet: no file
    finally:
        video.close()
    assert list(tmp_path.iterdir()) == []


def test_headless_here(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert has_gui() is False  # no display: no window, a live source's display="auto" shows nothing
    assert in_notebook() is False and opencv_has_gui() is False  # the pinned opencv-python-headless
    assert "there is no display" in why_no_window()
    monkeypatch.setenv("DISPLAY", ":0")  # a display, but neither OpenCV's GUI nor tkinter: the fix is named
    monkeypatch.setattr("maskdetect.infer.window.why_no_tk", lambda: "this Python has no tkinter")
    assert "opencv-python-headless) and this Python has no tkinter" in why_no_window()


def shown_frame() -> FrameResult:
    image = np.zeros((24, 32, 3), np.uint8)
    return FrameResult(Frame(image, 0), Detections.empty(), annotated=image)


def test_show_without_a_window_says_why_and_goes_on(monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    view = DisplaySink("window", "t")
    assert view.mode == "none" and view.write(shown_frame()) is True
    assert "no window: there is no display" in caplog.text
    caplog.clear()
    assert DisplaySink("auto", "t").mode == "none" and caplog.text == ""  # auto: silent


def test_show_in_jupyter_without_a_window_goes_inline(monkeypatch, caplog):
    import types

    monkeypatch.setattr("maskdetect.infer.sinks.in_notebook", lambda: True)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda image, display_id=False: shown.append(image) or
                        types.SimpleNamespace(update=shown.append))
    view = DisplaySink(True, "t")
    assert view.mode == "notebook" and "shown in the notebook instead" in caplog.text
    view.write(shown_frame())
    view.write(shown_frame())
    assert len(shown) == 2 and shown[0].format == "jpeg"


def test_a_window_that_fails_is_dropped_not_fatal(monkeypatch, caplog):
    import cv2

    monkeypatch.setattr("maskdetect.infer.sinks.why_no_window", lambda: None)
    monkeypatch.setattr("maskdetect.infer.sinks.opencv_has_gui", lambda: True)
    keys = iter([ord("x"), ord("q")])
    monkeypatch.setattr(cv2, "imshow", lambda title, frame: None)
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys))
    view = DisplaySink("window", "t")
    assert view.mode == "window"
    assert view.write(shown_frame()) is True and view.write(shown_frame()) is False  # q stops

    def broken(title, frame):
        raise cv2.error("display gone")

    monkeypatch.setattr(cv2, "imshow", broken)
    assert view.write(shown_frame()) is True and view.mode == "none"
    assert "the window failed" in caplog.text


def test_cli_show_asks_for_a_window():
    from maskdetect.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["predict", "--model", "m", "--source", "0", "--show"]).display == "window"
    assert parser.parse_args(["predict", "--model", "m", "--source", "0"]).display == "auto"


# -- nothing the user has is lost (stub detector) -----------------------------------------------------------------
def test_annotated_images_never_overwrite_the_source_or_files_we_did_not_write(tmp_path):
    from test_guard import tree_hash

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted(SAMPLE_IMAGES.glob("*.jpg"))[:2]:
        shutil.copyfile(p, folder / p.name)
    before = tree_hash(folder)
    for out, json_path, message in ((folder, None, "is the input"), (folder / "annotated", None, "inside the input"),
                                    (tmp_path / "o", folder / "d.json", "inside the input"),
                                    (tmp_path, None, "holds the input")):
        with pytest.raises(OutputError, match=message):
            predict_source(OneFace(), folder, out, json_path=json_path, progress=False)
    out = tmp_path / "annotated"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    predict_source(OneFace(), folder, out, progress=False)
    predict_source(OneFace(), folder, out, progress=False)  # ours now: replaced
    assert (out / "notes.txt").read_text() == "mine"
    mine = out / sorted(folder.iterdir())[0].name
    (out / MARKER).unlink()  # no record that predict wrote them: they are the user's now
    with pytest.raises(OutputError, match=f"already holds .*{mine.name}"):
        predict_source(OneFace(), folder, out, progress=False)
    assert tree_hash(folder) == before


