"""Predictor and predict_* on the real tiny export (SavedModel and TFLite), plus the source/output plumbing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import maskdetect
from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, DataError, VideoError
from maskdetect.infer.predictor import (Predictor, find_label_map, predict_source, predict_video, read_image,
                                  resolve_export, source_kind, tflite_output_indices)
from maskdetect.infer.video import count_frames, even_size, make_test_clip, probe_video

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = REPO / "sample" / "face-mask" / "images"


# -- plumbing, no model ---------------------------------------------------------------------------------------
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


def _detail(name, shape, index):
    return {"name": name, "shape": np.array(shape), "index": index}


@pytest.mark.parametrize("details, expected", [
    # what export_tflite_graph_tf2 + the converter give today (names say nothing; tensor order does)
    ([_detail("StatefulPartitionedCall:1", [1, 100], 814), _detail("StatefulPartitionedCall:3", [1, 100, 4], 812),
      _detail("StatefulPartitionedCall:0", [1], 815), _detail("StatefulPartitionedCall:2", [1, 100], 813)],
     {"boxes": 812, "classes": 813, "scores": 814, "count": 815}),
    # the TF1-style post-processing op names
    ([_detail("TFLite_Detection_PostProcess", [1, 10, 4], 5), _detail("TFLite_Detection_PostProcess:1", [1, 10], 6),
      _detail("TFLite_Detection_PostProcess:2", [1, 10], 7), _detail("TFLite_Detection_PostProcess:3", [1], 8)],
     {"boxes": 5, "classes": 6, "scores": 7, "count": 8}),
    # explicit names, any order
    ([_detail("detection_scores", [1, 10], 0), _detail("num_detections", [1], 1),
      _detail("detection_classes", [1, 10], 2), _detail("detection_boxes", [1, 10, 4], 3)],
     {"boxes": 3, "classes": 2, "scores": 0, "count": 1}),
])
def test_tflite_outputs_are_identified(details, expected):
    assert tflite_output_indices(details) == expected


def test_tflite_outputs_that_are_not_ssd_postprocessing_are_refused():
    with pytest.raises(ConfigError, match="4 of SSD"):
        tflite_output_indices([_detail("logits", [1, 1000], 0)])
    with pytest.raises(ConfigError, match="cannot tell"):
        tflite_output_indices([_detail(f"out:{i}", [1, 5, 5], i) for i in range(4)])


def test_export_and_label_map_lookup(tmp_path):
    export = tmp_path / "run" / "export"
    (export / "saved_model").mkdir(parents=True)
    (export / "saved_model" / "saved_model.pb").write_bytes(b"")
    (export / "model.tflite").write_bytes(b"")
    assert resolve_export(export) == ("saved_model", export / "saved_model")
    assert resolve_export(export / "saved_model") == ("saved_model", export / "saved_model")
    assert resolve_export(export / "model.tflite") == ("tflite", export / "model.tflite")
    with pytest.raises(ConfigError, match="not a model export"):
        resolve_export(tmp_path)
    assert find_label_map(export / "saved_model") is None
    (tmp_path / "run" / "labelmap.pbtxt").write_text("")
    assert find_label_map(export / "model.tflite") == tmp_path / "run" / "labelmap.pbtxt"  # the parent dir
    (export / "label_map.pbtxt").write_text("")
    assert find_label_map(export / "saved_model") == export / "label_map.pbtxt"            # beside wins


# -- the real model ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tiny_export):
    return Predictor(tiny_export.saved_model, threshold=0.0)


@pytest.fixture(scope="module")
def lite(tiny_export):
    return Predictor(tiny_export.tflite, threshold=0.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Odd size, 29.97 FPS, with an audio track."""
    return make_test_clip(tmp_path_factory.mktemp("clips") / "odd.mkv", size_wh=(321, 241), fps="30000/1001",
                          frames=24, audio=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["saved", "lite"])
def test_predict_image_batch_and_stream(request, backend):
    predictor = request.getfixturevalue(backend)
    assert predictor.class_names == list(maskdetect.CLASSES)  # from the export's label_map.pbtxt
    images = [read_image(p) for p in sorted(SAMPLE_IMAGES.glob("*.jpg"))[:2]]
    images.append(np.zeros((97, 131, 3), np.uint8))  # odd size
    single = predictor.predict(images[0])
    assert isinstance(single, Detections) and len(single) > 0
    height, width = images[0].shape[:2]
    assert (single.xyxy >= 0).all() and (single.xyxy[:, [0, 2]] <= width).all()
    assert (single.xyxy[:, [1, 3]] <= height).all()
    assert set(single.class_id.tolist()) <= {0, 1, 2} and (np.diff(single.xyxy.reshape(-1, 2, 2), axis=1) >= 0).all()
    batch = predictor.predict_batch(images)
    assert len(batch) == 3 and batch[0] == single
    stream = predictor.predict_stream(iter(images))
    assert next(stream) == single  # lazy
    assert len(list(stream)) == 2
    assert predictor.speed.inference_ms > 0


@pytest.mark.slow
def test_post_processing_options(tiny_export, saved):
    image = read_image(sorted(SAMPLE_IMAGES.glob("*.jpg"))[0])
    raw = saved.predict_raw(image)
    assert len(saved.predict(image)) <= len(raw)
    loose = Predictor(tiny_export.saved_model, threshold=0.0, cross_class_nms=False, warmup=False)
    assert loose.predict(image) == raw
    cut = float(np.median(raw.confidence))
    strict = Predictor(tiny_export.saved_model, threshold=cut, cross_class_nms=False, warmup=False)
    assert (strict.predict(image).confidence >= cut).all()
    per_class = Predictor(tiny_export.saved_model, threshold=1.0, class_thresholds={"without_mask": 0.0},
                          cross_class_nms=False, warmup=False)
    assert set(per_class.predict(image).class_id.tolist()) <= {1}
    with pytest.raises(ConfigError, match="unknown class"):
        Predictor(tiny_export.saved_model, threshold={"no_such": 0.2}, warmup=False)


@pytest.mark.slow
def test_class_names_fall_back_without_a_label_map(tiny_export, tmp_path, caplog):
    lonely = tmp_path / "model.tflite"
    shutil.copyfile(tiny_export.tflite, lonely)
    shutil.copyfile(tiny_export.tflite.with_name("tflite_input.json"), tmp_path / "tflite_input.json")
    with caplog.at_level("WARNING"):
        predictor = Predictor(lonely)
    assert predictor.class_names == list(maskdetect.CLASSES) and "no label_map.pbtxt" in caplog.text
    image = read_image(sorted(SAMPLE_IMAGES.glob("*.jpg"))[0])
    if predictor.predict_raw(image).class_id.max() >= 1:  # ids the single name cannot cover
        with pytest.raises(DataError, match="label map"):
            Predictor(lonely, class_names=["only_one"], threshold=0.0).predict(image)


@pytest.mark.slow
def test_predict_video_end_to_end_with_tracking(lite, clip, tmp_path):
    from maskdetect.monitor.monitor import Monitor

    out, records = tmp_path / "out.mp4", tmp_path / "out.json"
    monitor = Monitor(lite.class_names, fps=float(probe_video(clip).fps), track=True)
    summary = predict_video(lite, clip, out, json_path=records, monitor=monitor, progress=False)
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
    assert (tmp_path / "out.summary.json").is_file()  # monitor.close(out) ran


class _InterruptAt:
    def __init__(self, n):
        self.n = n

    def update(self, detections, frame_index, timestamp_s):
        if frame_index == self.n:
            raise KeyboardInterrupt
        return detections

    def banner(self, frame_index):
        return None

    def close(self, out_path):
        raise AssertionError("an interrupted run must not write summaries")


@pytest.mark.slow
def test_keyboard_interrupt_in_predict_video_leaves_nothing(lite, clip, tmp_path):
    out, records = tmp_path / "out.mp4", tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt):
        predict_video(lite, clip, out, json_path=records, monitor=_InterruptAt(10), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_broken_source_raises_video_error_and_leaves_nothing(lite, clip, tmp_path):
    broken = tmp_path / "broken.mkv"
    data = clip.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # truncated: decodes a while, then stops
    out = tmp_path / "out.mp4"
    try:
        summary = predict_video(lite, broken, out, progress=False)
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
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == sorted(p.name for p in folder.iterdir())
    data = json.loads((tmp_path / "dets.json").read_text())
    assert data and set(data[0]) == {"image", "bbox_xyxy", "label", "score"}
    assert {r["image"] for r in data} <= {p.stem for p in folder.iterdir()}
    one = sorted(folder.iterdir())[0]
    predict_source(lite, one, tmp_path / "one.png")
    assert read_image(tmp_path / "one.png").shape == read_image(one).shape


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "maskdetect", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, **kwargs)


@pytest.mark.slow
def test_cli_video_with_json_and_tracking(tiny_export, clip, tmp_path):
    out = tmp_path / "cli.mp4"
    result = _cli("predict", "--model", str(tiny_export.tflite), "--source", str(clip), "--out", str(out),
                  "--json", str(tmp_path / "cli.json"), "--threshold", "0.05", "--track")
    assert result.returncode == 0, result.stderr[-3000:]
    assert count_frames(out) == 24 and probe_video(out).fps == probe_video(clip).fps
    assert all("frame" in r for r in json.loads((tmp_path / "cli.json").read_text()))
    assert (tmp_path / "cli.summary.json").is_file()
    bad = _cli("predict", "--model", str(tiny_export.tflite), "--source", str(clip))
    assert bad.returncode == 2 and "nothing to write" in bad.stderr


@pytest.mark.slow
def test_cli_killed_mid_write_leaves_no_output(tiny_export, tmp_path):
    clip = make_test_clip(tmp_path / "long.mp4", size_wh=(320, 240), fps="25", frames=2000, audio=True)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "maskdetect", "predict", "--model", str(tiny_export.tflite),
                             "--source", str(clip), "--out", str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.iterdir() if ".partial" in p.name and p.stat().st_size > 0]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)
    assert not out.exists()
