"""--show where OpenCV is the headless build: a Tk window, tested on a real X server (Xvfb, started here; `.ci/run`
installs it from the Debian registry): the frames reach the screen, q stops, a held image waits for a key, and
`maskdetect predict --show` on a clip runs with the window and no warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from maskdetect.detections import Detections
from maskdetect.infer.sinks import DisplaySink, FrameResult, opencv_has_gui, why_no_window
from maskdetect.infer.sources import Frame
import maskdetect.infer.window as window

COLOUR = (12, 200, 34)


@pytest.fixture(scope="module")
def xvfb():
    """A real X server on a free display number, for this module."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb; .ci/run installs it)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen([binary, f":{number}", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def press(root, keysym: str) -> None:
    """A key pressed in the window (X delivers keys to the window with the focus)."""
    root.focus_force()
    root.event_generate("<KeyPress>", keysym=keysym, when="tail")


def result(image: np.ndarray) -> FrameResult:
    return FrameResult(Frame(image, 0), Detections.empty(), annotated=image)


def pixels_of(display: str, colour, tk_window: window.TkWindow) -> int:
    """Screen pixels of exactly `colour` (Tk draws on its own schedule: ask a few times)."""
    from PIL import ImageGrab

    count = 0
    for _ in range(50):
        tk_window._root.update()
        shot = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))
        count = int((shot == colour).all(axis=2).sum())
        if count:
            break
        time.sleep(0.05)
    return count


def test_frames_reach_the_screen_and_q_stops(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    assert why_no_window() is None and not opencv_has_gui()  # a window, though the pinned OpenCV has no GUI: Tk's
    view = DisplaySink("window", "maskdetect test")
    assert view.mode == "window" and view.tk is not None
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:] = COLOUR
    assert view.write(result(frame)) is True
    assert pixels_of(xvfb, COLOUR, view.tk) == 120 * 160  # every pixel of the frame, unscaled
    frame[:] = (250, 5, 5)
    assert view.write(result(frame)) is True and pixels_of(xvfb, (250, 5, 5), view.tk) == 120 * 160
    press(view.tk._root, "q")
    view.tk._root.update()
    assert view.write(result(frame)) is False and view.tk.shown == 2
    view.close()


def test_a_held_image_waits_for_a_key(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    view = DisplaySink("window", "held", hold=True)
    frame = np.full((40, 60, 3), 128, np.uint8)
    view.tk.show(frame)  # opens the window, not held
    root = view.tk._root
    root.after(20_000, view.tk._on_close)  # a key that never arrives fails the test instead of hanging it
    started = time.monotonic()
    root.after(400, lambda: press(root, "space"))
    assert view.write(result(frame)) is True  # any key but q/Esc: next image
    assert 0.35 <= time.monotonic() - started < 15
    root.after(200, lambda: press(root, "Escape"))
    assert view.write(result(frame)) is False and time.monotonic() - started < 15
    view.close()


def test_cli_show_on_a_clip_opens_the_window(xvfb, tmp_path):
    from clips import make_test_clip

    clip = make_test_clip(tmp_path / "clip.mp4", size_wh=(320, 240), fps="10", frames=12, audio=False)
    done = subprocess.run([sys.executable, "-m", "maskdetect", "-v", "predict", "--source", str(clip), "--show"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "DISPLAY": xvfb, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no window" not in done.stderr and "window failed" not in done.stderr, done.stderr[-2000:]
    assert "showing the frames in a Tk window" in done.stderr
    assert list(tmp_path.iterdir()) == [clip]  # --show alone writes nothing
