"""Real signals sent to a real ``maskdetect predict`` process (the bundled TFLite model on LiteRT: no TensorFlow,
so each process starts in seconds) on a generated clip or a loopback HTTP stream.

* SIGTERM / SIGHUP on a live source are Ctrl-C: the recording, the JSON and the monitor's summary are finished.
* SIGTERM on a file source leaves the previous run's outputs (video, JSON, events, summary) byte-identical.
* A second run on the same output while the first is alive is refused, and the first one's partial is kept.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
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


class _Throttled(http.server.SimpleHTTPRequestHandler):
    """Serves files like a live stream: at most ~100 KB/s, so the client cannot read to the end at once."""

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        try:
            while chunk := source.read(16 * 1024):
                outputfile.write(chunk)
                time.sleep(0.16)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def stream_url(tmp_path_factory):
    """An MPEG-TS clip served over loopback HTTP as a live stream (a minute of it)."""
    folder = tmp_path_factory.mktemp("stream")
    make_test_clip(folder / "live.ts", size_wh=(320, 240), fps="25", frames=1500, audio=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Throttled, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live.ts"
    server.shutdown()


def start_predict(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "maskdetect", "predict", "--threads", "1", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)


def test_an_ignored_sighup_stays_ignored_while_the_loop_runs():
    """`nohup maskdetect predict --source rtsp://...`: closing the terminal must not stop the recording."""
    from maskdetect.infer.loop import stop_signals_as_interrupt

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def wait_for_partial(proc: subprocess.Popen, folder: Path, timeout_s: float = 300) -> Path:
    """The first non-empty partial output of `proc` in `folder` (encoded frames reached the disk)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [p for p in folder.iterdir() if ".partial" in p.name and p.suffix != ".jsonl" and p.stat().st_size]
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the recording never started"
        time.sleep(0.2)


def tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow  # about 25 s each on the busy 2-core machine (start, a live stream, the summary's plot)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_on_a_live_stream_finish_the_recording_json_and_summary(stream_url, tmp_path, signum):
    out = tmp_path / "rec.mp4"
    proc = start_predict("--source", stream_url, "--out", str(out), "--json", str(tmp_path / "rec.json"),
                         "--track", "--display", "none")
    try:
        wait_for_partial(proc, tmp_path)
        time.sleep(1)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert f"{signal.Signals(signum).name} received" in stderr and "(stopped)" in stdout
    assert stdout.splitlines()[0].startswith("Speed: ") and len(stdout.splitlines()) == 2  # one speed, one result
    info = probe_video(out)
    assert info.codec == "h264" and count_frames(out) > 0
    records = json.loads((tmp_path / "rec.json").read_text())  # complete, valid JSON
    assert all("frame" in r for r in records)
    summary = json.loads((tmp_path / "rec.summary.json").read_text())
    assert summary["frames"] > 0 and summary["fps"] == 25 and (tmp_path / "rec.events.jsonl").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial, no lock


def test_sigterm_on_a_video_file_keeps_the_previous_runs_outputs(tmp_path):
    (tmp_path / "in").mkdir()
    clip = make_test_clip(tmp_path / "in" / "long.mp4", size_wh=(320, 240), fps="25", frames=1500, audio=False)
    results = tmp_path / "results"
    results.mkdir()
    for name, text in (("out.mp4", "the previous video"), ("out.json", "[]"),
                       ("out.events.jsonl", '{"event": "alert_raised"}\n'), ("out.summary.json", "{}")):
        (results / name).write_text(text)
    before = tree(results)
    proc = start_predict("--source", str(clip), "--out", str(results / "out.mp4"), "--json",
                         str(results / "out.json"), "--track", "--alert-seconds", "0")
    try:
        wait_for_partial(proc, results)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in stderr, stderr[-2000:]
    assert tree(results) == before  # nothing replaced, no partial or lock left


def test_a_second_run_on_the_same_output_is_refused_and_never_deletes_the_live_partial(stream_url, tmp_path):
    out = tmp_path / "rec.mp4"
    first = start_predict("--source", stream_url, "--out", str(out), "--display", "none")
    try:
        partial = wait_for_partial(first, tmp_path)
        second = subprocess.run([sys.executable, "-m", "maskdetect", "predict", "--source", stream_url, "--out",
                                 str(out), "--display", "none"], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2 and f"(pid {first.pid}) is writing it now" in second.stderr, second.stderr
        error = second.stderr.strip().splitlines()[-1]
        assert error.startswith("maskdetect predict: error: ") and "Traceback" not in second.stderr
        assert partial.exists() and first.poll() is None  # the living run's partial is untouched
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr[-2000:]
    assert count_frames(out) > 0 and not partial.exists()
