"""maskdetect.site: the site file, zones, carried boxes, retention, and a real watch of loopback streams (HTTP
from ffmpeg, RTSP from GStreamer's RTSP server; killed and restarted) with the bundled model."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError
from maskdetect.site.camera import CarryingPredictor, JsonLinesSink, blur_boxes, zone_membership
from maskdetect.site.config import Zone, cameras_from_sources, load_site
from maskdetect.site.watch import Retention, watch

from site_streams import (MASKED, UNMASKED, RtspStandin, StandinStream, make_clip, rtsp_server_missing,
                          wait_for)


def test_site_file_reads_secrets_from_the_environment_and_checks_every_value(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("""
defaults: {alert_seconds: 2}
cameras:
  - name: door
    source: http://viewer:${CAM_PASS}@127.0.0.1:9/x.ts
    threshold: 0.4
    zones: [{name: doorway, polygon: [[0, 0], [100, 0], [100, 100]]}]
    hooks: [{url: "${HOOK_URL}", format: slack}]
  - {name: hall, source: "0", alert_seconds: 5}
""")
    env = {"CAM_PASS": "s3cr3t-pass", "HOOK_URL": "https://hooks.example/T000/B000/xyzzy-hook-key"}
    door, hall = load_site(site, env)
    assert door.source == "http://viewer:s3cr3t-pass@127.0.0.1:9/x.ts" and door.alert_seconds == 2
    assert door.zones == (Zone("doorway", ((0, 0), (100, 0), (100, 100))),) and door.threshold == 0.4
    assert door.hooks[0]["url"] == env["HOOK_URL"] and hall.alert_seconds == 5
    assert "s3cr3t-pass" not in door.label  # redacted wherever a camera is named
    from maskdetect.redact import redact

    assert "xyzzy-hook-key" not in redact(f"posting to {env['HOOK_URL']}")
    with pytest.raises(ConfigError, match=r"site.yaml.*CAM_PASS is not set"):
        load_site(site, {"HOOK_URL": "x"})
    for bad, message in [("cameras: [{name: a, source: x, zonez: []}]", "unknown key"),
                         ("cameras: [{name: a, source: x}, {name: a, source: y}]", "two cameras"),
                         ("cameras: [{name: 'a b', source: x}]", "name"),
                         ("cameras: [{name: a, source: x, threshold: 2}]", "threshold"),
                         ("cameras: [{name: a, source: x, zones: [{polygon: [[0, 0], [1, 1]]}]}]", "3 points"),
                         ("cameras: [{name: a}]", "no source"), ("cams: []", "cameras")]:
        site.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_site(site, {})
    assert [c.name for c in cameras_from_sources(["rtsp://u:p@h/s", "hall=0"])] == ["cam1", "hall"]


def test_zones_count_the_centre_of_each_box():
    zones = [Zone("left", ((0, 0), (50, 0), (50, 100), (0, 100))), Zone("all", ((0, 0), (200, 0), (200, 100), (0, 100)))]
    inside = zone_membership(np.array([[10, 10, 30, 30], [60, 10, 80, 30], [40, 10, 70, 30]]), zones)
    assert inside.tolist() == [[True, True], [False, True], [False, True]]  # the third's centre is at x=55


class _Model:
    class_names = ["with_mask", "without_mask", "mask_weared_incorrect"]

    def __init__(self):
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        x = 5.0 * (self.calls - 1) * 3  # moves 5 px per frame; detected every third frame
        return Detections(xyxy=[[x, 0, x + 20, 20], [100, 50, 120, 70]], confidence=[0.9, 0.4], class_id=[1, 0])


def test_detect_every_k_carries_boxes_at_their_velocity_and_applies_the_camera_threshold():
    model = _Model()
    carrying = CarryingPredictor(model, every=3, threshold=0.5)
    image = np.zeros((100, 400, 3), np.uint8)
    xs = [carrying.predict(image).xyxy[:, 0].tolist() for _ in range(9)]
    assert model.calls == 3 and carrying.detected == 3
    # frames 0-2 hold still (no velocity yet), then each box moves 5 px a frame between detections
    assert xs == [[0.0], [0.0], [0.0], [15.0], [20.0], [25.0], [30.0], [35.0], [40.0]]


def test_blur_and_private_records(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 100, 3), np.uint8)
    out = blur_boxes(image, np.array([[20, 20, 60, 60]]))
    assert np.array_equal(out[:, 70:], image[:, 70:]) and out[30:50, 30:50].std() < image[30:50, 30:50].std() / 3
    from maskdetect.infer.sinks import FrameResult
    from maskdetect.infer.sources import Frame

    sink = JsonLinesSink(tmp_path / "d.jsonl", private=True)
    record = {"frame": 3, "time_s": 0.3, "bbox_xyxy": [1, 2, 3, 4], "label": "without_mask", "score": 0.9,
              "track_id": 7, "smoothed_class_id": 1}
    sink.write(FrameResult(Frame(image, 3), Detections.empty(), [record]))
    sink.close()
    assert json.loads((tmp_path / "d.jsonl").read_text()) == {"frame": 3, "time_s": 0.3, "bbox_xyxy": [1, 2, 3, 4],
                                                              "label": "without_mask"}


def test_retention_deletes_the_oldest_closed_segments_first(tmp_path):
    cam = tmp_path / "door"
    cam.mkdir()
    now = time.time()
    for i, stem in enumerate(["20260101-000000", "20260101-001000", "20260101-002000", "20260101-003000"]):
        for suffix, size in ((".mp4", 400), (".detections.jsonl", 100)):
            path = cam / f"{stem}{suffix}"
            path.write_bytes(b"x" * size)
            os.utime(path, (now - 3600 * (4 - i), now - 3600 * (4 - i)))
    (cam / "events.jsonl").write_text("{}\n")
    (cam / "notes.mp4").write_bytes(b"mine")  # not a segment name: never touched
    busy = {cam / "20260101-000000"}  # being written: never deleted, however old
    deleted = Retention(tmp_path, hours=2.5, busy=lambda: busy).enforce()
    assert sorted(deleted) == ["door/20260101-001000.detections.jsonl", "door/20260101-001000.mp4"]
    deleted = Retention(tmp_path, gb=1000e-9, busy=lambda: busy).enforce()  # 1000 bytes: keep the newest two
    assert sorted(deleted) == ["door/20260101-002000.detections.jsonl", "door/20260101-002000.mp4"]
    assert sorted(p.name for p in cam.iterdir()) == ["20260101-000000.detections.jsonl", "20260101-000000.mp4",
                                                     "20260101-003000.detections.jsonl", "20260101-003000.mp4",
                                                     "events.jsonl", "notes.mp4"]


@pytest.fixture(scope="module")
def predictor():
    from maskdetect.infer.predictor import Predictor

    return Predictor(None)


def drop_and_restore(stream, seen: list[str], down_s: float = 0.0):
    """A `watch` ``on_ready`` hook: after 3 frames of camera "door" it stops `stream`, waits for the camera to
    show "reconnecting", starts the stream again `down_s` later, waits for 3 frames after the reconnect, and stops
    the watch; what it saw goes to `seen`."""
    def chaos(handle):
        state = handle.cameras["door"]
        try:
            wait_for(lambda: state.frames >= 3, 60, "frames from the stream")
            stream.stop()
            wait_for(lambda: state.status == "reconnecting", 20, "the camera to show reconnecting")
            seen.append(state.status)
            time.sleep(down_s)
            stream.start()
            before = state.frames
            wait_for(lambda: state.reconnects == 1 and state.frames >= before + 3, 60, "frames after the reconnect")
            seen.append("resumed")
        finally:
            handle.stop()

    return lambda handle: threading.Thread(target=chaos, args=(handle,), daemon=True).start()


def test_watch_survives_a_dropped_stream_in_a_new_segment_keeps_secrets_and_blurs(tmp_path, predictor, caplog,
                                                                                 monkeypatch):
    """A real stream on loopback, killed and restarted: the camera shows "reconnecting", reconnects, and its
    recording resumes in a new, complete segment; the password in the URL appears nowhere."""
    from maskdetect.infer.video import probe_video

    caplog.set_level(logging.INFO)
    stream = StandinStream(make_clip(tmp_path / "unmasked.mp4", UNMASKED)).start()
    monkeypatch.setenv("DOOR_TOKEN", "tok-4f9a8b7c6d")
    site = tmp_path / "site.yaml"
    site.write_text(f"cameras:\n  - name: door\n    source: {stream.url}?token=${{DOOR_TOKEN}}\n"
                    "    zones: [{name: left, polygon: [[0, 0], [160, 0], [160, 240], [0, 240]]},"
                    " {name: right, polygon: [[160, 0], [320, 0], [320, 240], [160, 240]]}]\n")
    seen: list[str] = []
    out = tmp_path / "site"
    try:
        result = watch(load_site(site), out, predictor=predictor, privacy="blur", duration_s=150,
                       on_ready=drop_and_restore(stream, seen, down_s=1.0))
    finally:
        stream.stop()
    assert seen == ["reconnecting", "resumed"]
    door = result["cameras"]["door"]
    assert door["reconnects"] == 1 and door["segments"] >= 2
    segments = sorted((out / "door").glob("*.mp4"))
    assert len(segments) >= 2 and all(probe_video(p).expected_frames for p in segments)  # each one complete
    records = [json.loads(line) for p in sorted((out / "door").glob("*.detections.jsonl"))
               for line in p.read_text().splitlines()]
    assert records and {r["label"] for r in records} >= {"without_mask"}
    assert all(set(r) <= {"frame", "time_s", "wall_time", "bbox_xyxy", "label", "zones"} for r in records)
    assert {r["zones"] for r in records} == {"left"}  # the face is left of centre in the stand-in
    assert door["summary"]["frames"] == door["frames"]  # one monitor across both connections
    assert (out / "door" / "camera.summary.json").is_file() and (out / "door" / "events.jsonl").is_file()
    written = "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.suffix in (".json", ".jsonl"))
    assert "tok-4f9a8b7c6d" not in written and "tok-4f9a8b7c6d" not in caplog.text
    assert "token=***" in caplog.text  # the camera is named, redacted


def test_watch_reads_an_rtsp_camera_with_a_password_and_survives_its_server_restarting(tmp_path, predictor, caplog,
                                                                                       capfd):
    """A real RTSP server on loopback (GStreamer's, requiring the password; H.264 over RTP/TCP as OpenCV asks),
    killed and restarted on the same port: the camera shows "reconnecting", reconnects, and records into a new,
    complete segment; the password appears in no log, printed line, output file or result."""
    from maskdetect.infer.video import probe_video
    from maskdetect.site.config import cameras_from_sources

    missing = rtsp_server_missing()
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)
    caplog.set_level(logging.INFO)
    password = "pw-7Qk2x9vR"
    server = RtspStandin(make_clip(tmp_path / "unmasked.mp4", UNMASKED, seconds=30), "viewer", password).start()
    seen: list[str] = []
    out = tmp_path / "site"
    try:
        result = watch(cameras_from_sources([f"door={server.url}"]), out, predictor=predictor, duration_s=120,
                       on_ready=drop_and_restore(server, seen))
    finally:
        server.stop()
    assert seen == ["reconnecting", "resumed"]
    door = result["cameras"]["door"]
    assert door["reconnects"] == 1 and door["segments"] >= 2 and door["frames"] >= 6
    segments = sorted((out / "door").glob("*.mp4"))
    assert len(segments) >= 2 and all(probe_video(p).expected_frames for p in segments)  # each one complete
    records = [json.loads(line) for p in sorted((out / "door").glob("*.detections.jsonl"))
               for line in p.read_text().splitlines()]
    assert {r["label"] for r in records} >= {"without_mask"}  # real frames of the clip, through the model
    printed = capfd.readouterr()
    written = "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.suffix in (".json", ".jsonl"))
    for text in (caplog.text, printed.out, printed.err, written, json.dumps(result, default=str)):
        assert password not in text
    assert "rtsp://***@127.0.0.1" in caplog.text  # the camera is named, redacted


def test_watch_command_on_a_video_file_camera(tmp_path, capsys):
    """`maskdetect watch --source NAME=FILE`: a file plays as a live camera and ends; detecting every 2nd frame,
    blurred, without recordings."""
    from maskdetect.cli import main

    clip = make_clip(tmp_path / "clip.mp4", UNMASKED, seconds=1.5)
    out = tmp_path / "site"
    assert main(["watch", "--source", f"lobby={clip}", "--out", str(out), "--detect-every", "2", "--privacy",
                 "blur", "--no-record", "--duration", "120"]) == 0
    printed = capsys.readouterr().out
    assert "lobby:" in printed and "ended" in printed
    result = json.loads((out / "watch.json").read_text())
    assert result["cameras"]["lobby"]["status"] == "ended" and result["cameras"]["lobby"]["frames"] > 0
    assert not list((out / "lobby").glob("*.mp4"))  # --no-record
    lines = [json.loads(x) for p in (out / "lobby").glob("*.detections.jsonl") for x in p.read_text().splitlines()]
    assert lines and all("score" not in r for r in lines)
    with pytest.raises(SystemExit):
        main(["watch", "--out", str(out), "--detect-every", "0", "--source", str(clip)])
    assert main(["watch", "--out", str(out)]) == 2  # neither a site file nor --source
