"""Stand-in cameras for the site tests: short clips made from the bundled sample photos, served on loopback as
HTTP MPEG-TS by ffmpeg (killed and restarted to test reconnects)."""

from __future__ import annotations

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


class StandinStream:
    """``ffmpeg -re -stream_loop -1 -i CLIP -f mpegts -listen 1 http://127.0.0.1:PORT/x.ts`` (one reader)."""

    def __init__(self, clip: Path, port: int | None = None) -> None:
        self.clip, self.port = clip, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/x.ts"
        self.process: subprocess.Popen | None = None

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

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def __enter__(self) -> "StandinStream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
