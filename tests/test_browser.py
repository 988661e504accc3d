"""The browser's webcam on Colab (maskdetect.infer.browser), against a stand-in ``google.colab``: frames in,
annotated frames back, and the whole live loop with a stub detector (no TensorFlow)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from maskdetect.infer import browser
from test_colab_install import fake_colab  # noqa: F401  (the stand-in google.colab, a fixture)


def test_browser_webcam_reads_newest_frames_and_shows_overlays(fake_colab, monkeypatch):
    displayed = []
    monkeypatch.setattr("IPython.display.display", lambda obj: displayed.append(obj))
    frames = [np.full((48, 64, 3), value, np.uint8) for value in (30, 120, 220)]
    replies = [True] + [browser.encode_data_url(f, quality=95) for f in frames] + [""]

    def eval_js(expression):
        fake_colab.output.calls.append(expression)
        return replies.pop(0) if replies else ""

    fake_colab.output.eval_js = eval_js
    camera = browser.BrowserWebcam(width=320)
    got = []
    for frame in camera.frames():
        got.append(frame)
        camera.show(255 - frame)
    assert len(got) == 3 and got[0].shape == (48, 64, 3)
    assert [int(round(f.mean())) for f in got] == pytest.approx([30, 120, 220], abs=2)
    calls = fake_colab.output.calls
    assert calls[0] == "maskdetectStart(320, 0.8)" and calls[1] == 'maskdetectFrame("")'
    assert calls[2].startswith('maskdetectFrame("data:image/jpeg;base64,')  # the first overlay goes back
    assert "getUserMedia" in displayed[0].data


def test_browser_webcam_stops_after_max_frames_and_releases_the_camera(fake_colab, monkeypatch):
    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    frame = browser.encode_data_url(np.zeros((8, 8, 3), np.uint8))
    fake_colab.output.eval_js = lambda expression: fake_colab.output.calls.append(expression) or (
        True if expression.startswith("maskdetectStart") else frame)
    assert len(list(browser.BrowserWebcam().frames(max_frames=2))) == 2
    assert "stopped = true" in fake_colab.output.calls[-1]


@pytest.mark.skipif(shutil.which("node") is None, reason="node checks the JavaScript's syntax")
def test_webcam_javascript_parses(tmp_path):
    script = tmp_path / "webcam.js"
    script.write_text(browser.WEBCAM_JS)
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_data_url_round_trip():
    image = (np.arange(16 * 16 * 3) % 256).astype(np.uint8).reshape(16, 16, 3)
    back = browser.decode_data_url(browser.encode_data_url(image, quality=100))
    assert back.shape == image.shape and np.abs(back.astype(int) - image).mean() < 8
    with pytest.raises(ValueError):
        browser.decode_data_url("data:text/plain;base64,aGk=")


def test_run_browser_webcam_detects_tracks_records_and_shows(fake_colab, monkeypatch, tmp_path):
    """The Colab live loop with a stub detector (no TensorFlow): FPS and alert banner drawn, frames sent back to
    the page, an H.264 recording and the monitor's summary written."""
    import maskdetect
    from maskdetect.detections import Detections
    from maskdetect.monitor.monitor import Monitor, MonitorSettings
    from maskdetect.infer.video import probe_video

    monkeypatch.setattr("IPython.display.display", lambda obj: None)
    frame = browser.encode_data_url(np.full((120, 160, 3), 90, np.uint8), quality=95)
    shown = []

    def eval_js(expression):
        if expression.startswith("maskdetectStart"):
            return True
        if expression.startswith("maskdetectFrame(\"data:"):
            shown.append(expression)
        return frame

    fake_colab.output.eval_js = eval_js

    class Unmasked:  # one face without a mask in every frame
        class_names = list(maskdetect.CLASSES)

        def predict(self, image):
            return Detections(xyxy=[[40, 30, 100, 100]], confidence=[0.9], class_id=[1])

    monitor = Monitor(MonitorSettings(alert_seconds=0.0, alert_cooldown_s=0, min_track_frames=1))
    result = browser.run_browser_webcam(Unmasked(), monitor=monitor, record_path=tmp_path / "webcam.mp4",
                                      json_path=tmp_path / "webcam.json", max_frames=12)
    assert result.frames == 12 and result.fps > 0
    assert len(shown) == 11  # every annotated frame but the last goes back with the next request
    info = probe_video(tmp_path / "webcam.mp4")
    assert info.size_wh == (160, 120) and info.codec == "h264"
    assert result.monitor["alerts"]["raised"] >= 1
    records = json.loads((tmp_path / "webcam.json").read_text())  # the same loop as the CLI: JSON records too
    assert len(records) == 12 and {"frame", "time_s", "track_id"} <= records[0].keys()
    assert (tmp_path / "webcam.summary.json").exists() and (tmp_path / "webcam.compliance.png").exists()
