"""Test-only video clips made by ffmpeg (moved out of ``maskdetect.infer.video``: the package does not ship them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from maskdetect.errors import VideoError
from maskdetect.infer.video import ffmpeg_exe, parse_rate


def make_test_clip(path: str | Path, *, size_wh: tuple[int, int] = (321, 241), fps: str = "30000/1001",
                   frames: int = 30, audio: bool = True, codec: str = "libx264") -> Path:
    """A clip from ffmpeg's ``testsrc2`` (moving pattern, never blank) with an optional 440 Hz ``sine`` track.

    Odd sizes are encoded with a codec that allows them (mpeg4 in .avi/
    .mkv or x264 yuv444p) so the *input* keeps its odd size.
    """
    path = Path(path)
    width, height = size_wh
    rate = parse_rate(fps)
    duration = frames / rate
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width + width % 2}x{height + height % 2}"
                                 f":rate={rate.numerator}/{rate.denominator}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={float(duration):.6f}"]
    args += ["-vf", f"format=yuv444p,crop={width}:{height}:0:0", "-frames:v", str(frames), "-c:v", codec]
    if codec == "libx264":
        args += ["-pix_fmt", "yuv444p" if width % 2 or height % 2 else "yuv420p", "-preset", "ultrafast"]
    if audio:
        args += ["-c:a", "aac"]
    args.append(str(path))
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise VideoError(f"ffmpeg could not make {path}:\n{result.stderr[-2000:]}")
    return path
