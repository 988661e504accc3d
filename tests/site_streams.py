"""Stand-in cameras for the site tests: short clips made from the bundled sample photos, served on loopback as
HTTP MPEG-TS by ffmpeg, or as RTSP by GStreamer's RTSP server (killed and restarted to test reconnects)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "sample" / "face-mask" / "images"
#: A photo the bundled model calls without_mask (0.8 at 320x240), and one it calls with_mask (0.77).
UNMASKED, MASKED = "maksssksksss817.jpg", "maksssksksss592.jpg"


def standin_frame(photo: str, size_wh: tuple[int, int] = (320, 240)) -> np.ndarray:
    """The photo scaled to the frame's height, centred on a grey frame (RGB)."""
    import cv2

    from maskdetect.infer.sources import read_image

    image = read_image(SAMPLE_IMAGES / photo)
    width, height = size_wh
    scaled = cv2.resize(image, None, fx=height / image.shape[0], fy=height / image.shape[0])[:, :width]
    frame = np.full((height, width, 3), 100, np.uint8)
    x = (width - scaled.shape[1]) // 2
    frame[:, x:x + scaled.shape[1]] = scaled
    return frame


def make_clip(path: Path, photo: str, *, seconds: float = 2.0, fps: int = 10,
              size_wh: tuple[int, int] = (320, 240)) -> Path:
    """A clip of the photo, with a moving bar so every frame differs."""
    from maskdetect.infer.video import VideoWriter

    base = standin_frame(photo, size_wh)
    with VideoWriter(path, Fraction(fps), size_wh) as writer:
        for i in range(int(seconds * fps)):
            frame = base.copy()
            frame[-6:, (i * 7) % size_wh[0]:(i * 7) % size_wh[0] + 20] = 255
            writer.write(frame)
    return path


def wait_for(condition, timeout_s: float, what: str):
    """Poll `condition` every 10 ms until it is true; its value. TimeoutError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.01)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """A socket listens on 127.0.0.1:`port` (read from /proc/net/tcp, without connecting)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        time.sleep(1.0)
        return True
    return any(f":{port:04X}" == line.split()[1][-5:] and line.split()[3] == "0A" for line in lines)


class _Server:
    """A stand-in server process: :meth:`start` it, :meth:`stop` (kill) it, and start it again on the same port."""

    process: subprocess.Popen | None = None

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class StandinStream(_Server):
    """``ffmpeg -re -stream_loop -1 -i CLIP -f mpegts -listen 1 http://127.0.0.1:PORT/x.ts`` (one reader)."""

    def __init__(self, clip: Path, port: int | None = None) -> None:
        self.clip, self.port = clip, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/x.ts"

    def start(self) -> "StandinStream":
        import imageio_ffmpeg

        self.process = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", str(self.clip), "-c", "copy", "-f", "mpegts", "-listen", "1", self.url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not listening(self.port):  # (a probe connection would be its reader)
            time.sleep(0.05)
        return self


#: The RTSP stand-in runs on the system Python: Debian's PyGObject (python3-gi) and GStreamer's RTSP server
#: (gir1.2-gst-rtsp-server-1.0, which .ci/run installs) are not in the project's venv.
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_standin.py"
RTSP_APT_PACKAGE = "gir1.2-gst-rtsp-server-1.0"


def rtsp_server_missing() -> str | None:
    """Why GStreamer's RTSP server cannot run here, or None if it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                              "from gi.repository import GstRtspServer"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if probe.returncode:
        why = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit code {probe.returncode}"
        return (f"GStreamer's RTSP server or PyGObject is missing ({why}): apt-get install {RTSP_APT_PACKAGE} "
                "python3-gi (.ci/run installs them)")
    return None


class RtspStandin(_Server):
    """A camera at ``rtsp://USER:PASSWORD@127.0.0.1:PORT/cam``: GStreamer's RTSP server (``rtsp_standin.py``)
    plays the H.264 clip to each reader from its start, over RTP on TCP (OpenCV's choice) or UDP, and refuses a
    reader without the password. The server is its own publisher, so killing it drops the camera entirely.

    Args:
        clip: an H.264 MP4 (:func:`make_clip`), long enough for one connection (a reader sees it end).
        user, password: the credentials it requires (the password goes to it in its environment).
        port: the RTSP port (default: a free one); kept across restarts.
    """

    def __init__(self, clip: Path, user: str, password: str, port: int | None = None) -> None:
        self.clip, self.user, self._password, self.port = clip, user, password, port or free_port()
        self.url = f"rtsp://{user}:{password}@127.0.0.1:{self.port}/cam"

    def start(self, timeout_s: float = 30.0) -> "RtspStandin":
        """Start the server and wait until it listens. Raises RuntimeError (with its log) if it does not."""
        log = self.clip.with_name(f"rtsp-{self.port}.log")
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), str(self.clip), str(self.port), "/cam", self.user],
                env={**os.environ, "RTSP_STANDIN_PASSWORD": self._password},
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if select.select([self.process.stdout], [], [], 0.1)[0]:
                if self.process.stdout.readline().strip() == b"ready":
                    return self
        self.stop()
        raise RuntimeError(f"the RTSP stand-in did not start: {log.read_text(errors='replace')[-2000:]}")
