"""``maskdetect predict`` in a fresh process on the real tiny export: a video with tracking, a kill mid-write, and
an HTTP "stream" with a password stopped by SIGINT."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from children import default_signals
from clips import make_test_clip
from maskdetect.infer.video import count_frames, probe_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Odd size, 29.97 FPS, with an audio track."""
    return make_test_clip(tmp_path_factory.mktemp("clips") / "odd.mkv", size_wh=(321, 241), fps="30000/1001",
                          frames=24, audio=True)


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "maskdetect", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, **kwargs)


def tensorflow_log_lines(stderr: str) -> list[str]:
    """Lines of TensorFlow's native log (cuInit, cudart_stub, oneDNN, absl's banner) in a command's stderr."""
    from maskdetect.logs import TF_LOG_LINE

    return [line for line in stderr.splitlines()
            if TF_LOG_LINE.match(line.encode()) or "absl::InitializeLog" in line or "cuInit" in line]


@pytest.mark.slow
def test_cli_predict_prints_no_tensorflow_startup_line(tiny_export, tmp_path):
    """The SavedModel on an image at the default verbosity: our result line only, no TensorFlow start-up lines
    and no deprecation warnings (the HTTP-stream test below checks that -v still shows them)."""
    image = sorted((REPO / "sample" / "face-mask" / "images").glob("*.jpg"))[0]
    result = _cli("predict", "--model", str(tiny_export.saved_model), "--source", str(image),
                  "--out", str(tmp_path / "out.jpg"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert tensorflow_log_lines(result.stderr) == [], result.stderr
    assert "Warning" not in result.stderr and "deprecated" not in result.stderr, result.stderr
    assert result.stdout.strip().endswith(str(tmp_path / "out.jpg"))


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
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
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
    # -v shows our debug lines (no TensorFlow lines: LiteRT runs the .tflite without importing TensorFlow)
    assert [line for line in stderr.splitlines() if line.startswith("DEBUG ")], stderr[-2000:]
    assert "***@127.0.0.1" in stdout
    info = probe_video(out)
    assert info.codec == "h264" and count_frames(out) > 0
    assert (tmp_path / "rec.json").is_file()


@pytest.mark.slow
def test_cli_strict_refuses_a_truncated_video_and_writes_nothing(tiny_export, tmp_path):
    from test_video_input import faststart_mp4

    data = faststart_mp4(tmp_path, frames=40).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    result = _cli("predict", "--model", str(tiny_export.tflite), "--source", str(cut), "--out",
                  str(tmp_path / "o.mp4"), "--json", str(tmp_path / "o.json"), "--track", "--strict")
    assert result.returncode == 2 and "of the 40 frames" in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("o.", ".o."))]


# -- quiet, honest output with the bundled model (LiteRT: no TensorFlow, seconds per process) -----------------------
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_test_clip(tmp_path_factory.mktemp("tiny") / "tiny.mkv", size_wh=(96, 64), fps="10", frames=8,
                          audio=False)


def test_cli_prints_one_speed_line_and_one_result_line_and_no_bar_off_a_terminal(tiny_clip, tmp_path):
    result = _cli("predict", "--source", str(tiny_clip), "--out", f"{tmp_path}/results/", "--track")
    assert result.returncode == 0, result.stderr[-2000:]
    speed, line = result.stdout.splitlines()  # one speed line, then one result line
    assert re.fullmatch(r"Speed: [\d.]+ ms preprocess, [\d.]+ ms inference, [\d.]+ ms postprocess per frame", speed)
    out = tmp_path / "results" / "tiny.mp4"  # a trailing / is a folder: the video goes in it under its own name
    assert line.startswith(f"{tiny_clip}: 8 frames,") and line.endswith(f"-> {out}, {out.with_suffix('')}.summary.json")
    assert "\r" not in result.stderr and "it/s" not in result.stderr  # stderr is a pipe: no progress bar
    assert "monitor:" in result.stderr and count_frames(out) == 8


def test_cli_out_honours_its_suffix_or_refuses_before_the_model_loads(tiny_clip, tmp_path):
    avi = tmp_path / "clip.avi"
    assert _cli("predict", "--source", str(tiny_clip), "--out", str(avi), "--no-progress").returncode == 0
    assert avi.read_bytes()[:4] == b"RIFF" and probe_video(avi).codec == "h264"
    refused = _cli("predict", "--source", str(tiny_clip), "--out", str(tmp_path / "clip.webm"))
    assert refused.returncode == 2 and "model" not in refused.stderr  # refused before the model loaded
    assert refused.stderr.strip().splitlines()[-1].startswith("maskdetect predict: error: ")
    assert ".webm is not one of them" in refused.stderr and not (tmp_path / "clip.webm").exists()


def test_cli_show_on_files_needs_no_out_and_a_glob_is_a_source(tiny_clip, tmp_path):
    shown = _cli("predict", "--source", str(tiny_clip), "--show")  # headless here: it says why, and goes on
    assert shown.returncode == 0 and "no window" in shown.stderr and "8 frames" in shown.stdout, shown.stderr
    images = sorted((REPO / "sample" / "face-mask" / "images").glob("*.jpg"))[:2]
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    globbed = _cli("predict", "--source", f"{folder}/*.jpg", "--json", str(tmp_path / "d.json"))
    assert globbed.returncode == 0, globbed.stderr[-2000:]
    assert {r["image"] for r in json.loads((tmp_path / "d.json").read_text())} <= {p.stem for p in images}
    assert "2 image(s)" in globbed.stdout
