"""Video in and out through ffmpeg (the static binary of ``imageio-ffmpeg``; no system install needed).

* :func:`probe_video` reads a file's metadata with PyAV: exact frame rate as a `Fraction` (``30000/1001``),
  size as displayed (rotation applied, as ffmpeg applies it when decoding), codec, pixel format, audio.
* :class:`VideoReader` decodes frames to RGB ``uint8`` arrays through an ffmpeg pipe, every frame once, in
  order (``-fps_mode passthrough``: no duplicated or dropped frames).
* :class:`VideoWriter` encodes RGB frames to H.264 (libx264), yuv420p, ``+faststart``, at an exact rational
  rate, each frame written once; it can carry the audio of a source file over. It writes to a temporary name
  beside the output and renames on success, so a failed, interrupted or killed run never leaves a partial
  file under the final name.

Odd frame sizes: yuv420p needs even width and height. The writer **pads** one black column on the right
and/or one black row at the bottom (no resampling, so boxes stay pixel-exact); the output size is
``even_size(width, height)``: ``(w + w % 2, h + h % 2)``.

Example:
    >>> info = probe_video("in.mp4")                                       # doctest: +SKIP
    >>> with VideoReader("in.mp4") as frames, VideoWriter("out.mp4", info.fps, info.size_wh,
    ...                                                   audio_from="in.mp4") as sink:  # doctest: +SKIP
    ...     for frame in frames:
    ...         sink.write(frame)
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from maskdetect.errors import VideoError
from maskdetect.fileio import make_partial
from maskdetect.redact import redact

logger = logging.getLogger(__name__)

#: Container format by output suffix: the suffixes an H.264 output can have (others are refused).
VIDEO_OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
#: x264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class Encoder:
    """The H.264 (libx264) settings of every video maskdetect writes: the one place they are chosen.

    Attributes:
        crf: quality, 0 (lossless) to 51; 23 is x264's own default, visually clean for annotated frames.
        preset: speed preset (:data:`X264_PRESETS`). ``ultrafast`` is the default because the encoder shares the
            CPU with the model: at 720p it costs 6.5 ms a frame (README, "Speed") and `predict` runs at the
            model's pace; ``veryfast`` or ``medium`` give files 2-4x smaller for more CPU.

    Raises:
        ConfigError: a crf outside 0-51 or an unknown preset.
    """

    crf: int = 23
    preset: str = "ultrafast"

    def __post_init__(self) -> None:
        from maskdetect.errors import ConfigError

        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise ConfigError(f"crf={self.crf!r}: the H.264 quality is a whole number from 0 (lossless) to 51")
        if self.preset not in X264_PRESETS:
            raise ConfigError(f"preset={self.preset!r}: choose one of {', '.join(X264_PRESETS)}")


def check_video_output(path: str | Path) -> None:
    """Refuse an output name whose suffix is not one the writer makes (it would get bytes of another format).

    Raises:
        ConfigError: naming the suffixes that work.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_OUTPUT_FORMATS:
        from maskdetect.errors import ConfigError

        raise ConfigError(f"{path}: a video is written as H.264 in {', '.join(VIDEO_OUTPUT_FORMATS)}; "
                          f"{suffix or 'a name without a suffix'} is not one of them. Choose one of these "
                          "suffixes, or end the path with / to write into a folder")
#: Audio codecs that can be stream-copied into MP4/MOV; anything else is re-encoded to AAC.
_COPYABLE_AUDIO = {"aac", "mp3", "alac"}
_YUV420 = {"yuv420p", "yuvj420p"}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by ``imageio-ffmpeg``."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size the writer produces for a ``width x height`` input (yuv420p needs even sides; it pads)."""
    return width + width % 2, height + height % 2


def parse_rate(value: str | float | int | Fraction) -> Fraction:
    """A frame rate as an exact `Fraction`: ``"30000/1001"``, ``"29.97"`` (-> 30000/1001), ``25``, ...

    Decimal rates that are the usual NTSC roundings (23.976, 29.97, 59.94, 119.88) map to their ``N*1000/1001``.
    """
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, str) and "/" in value:
        num, den = value.split("/", 1)
        rate = Fraction(int(num), int(den))
    else:
        rate = Fraction(str(value)).limit_denominator(1001)
        for base in (24, 30, 60, 120):
            if abs(float(rate) - base * 1000 / 1001) < 0.006:
                rate = Fraction(base * 1000, 1001)
    if rate <= 0:
        raise VideoError(f"frame rate {value!r} must be positive")
    return rate


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video file.

    Attributes:
        width, height: frame size as decoded by ffmpeg (display rotation applied).
        fps: exact average frame rate (``Fraction(30000, 1001)`` for 29.97).
        frame_count: frames according to the container (may be 0 when unknown; :func:`count_frames` decodes).
        duration_s: video stream duration in seconds (None if unknown).
        codec: video codec name (``"h264"``), pix_fmt: pixel format (``"yuv420p"``).
        audio_codec: codec of the first audio stream, or None when there is no audio.
        rotation: display rotation in degrees (counter-clockwise), 0 for none.
    """

    width: int
    height: int
    fps: Fraction
    frame_count: int
    duration_s: float | None
    codec: str
    pix_fmt: str | None
    audio_codec: str | None = None
    rotation: int = 0

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def expected_frames(self) -> int | None:
        """Best estimate of the number of frames (container count, else duration x fps)."""
        if self.frame_count > 0:
            return self.frame_count
        if self.duration_s:
            return int(round(self.duration_s * self.fps))
        return None


def probe_video(path: str | Path) -> VideoInfo:
    """Read the metadata of a video file with PyAV (decodes one frame to learn the display rotation).

    Raises:
        VideoError: the file is missing, not a video, or has no video stream.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise VideoError(f"{path}: the frame rate is unknown; re-mux the file with a frame rate")
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            rotation = 0
            try:
                first = next(container.decode(stream))
                rotation = int(round(first.rotation or 0)) % 360
            except (StopIteration, av.FFmpegError):
                pass
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            width, height = ctx.width, ctx.height
            if rotation in (90, 270):
                width, height = height, width
            return VideoInfo(width=width, height=height, fps=Fraction(rate), frame_count=int(stream.frames or 0),
                             duration_s=duration, codec=ctx.name, pix_fmt=ctx.pix_fmt, audio_codec=audio,
                             rotation=rotation)
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: cannot read it as a video ({exc})") from exc


def count_frames(path: str | Path) -> int:
    """Number of video frames, by decoding every one (exact, unlike container metadata)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, IndexError) as exc:
        raise VideoError(f"{path}: cannot decode ({exc})") from exc


class _StderrTail:
    """Drain a process's stderr in a thread (so it never blocks), keeping the last lines for error messages."""

    def __init__(self, stream, lines: int = 25) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True, name="ffmpeg-stderr")
        self._thread.start()

    def _drain(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self._lines.append(raw.decode("utf-8", "replace").rstrip())
        stream.close()

    def text(self, timeout: float = 2.0) -> str:
        self._thread.join(timeout)
        return redact("\n".join(line for line in self._lines if line))


def _popen(args: list[str], **kwargs) -> subprocess.Popen:
    logger.debug("running %s", redact(" ".join(args)))
    try:
        # A new session: Ctrl-C in a terminal reaches Python only, which then finalises or removes the output
        # itself (ffmpeg would otherwise stop on its own SIGINT mid-write).
        return subprocess.Popen(args, start_new_session=True, **kwargs)
    except OSError as exc:
        raise VideoError(f"cannot start ffmpeg ({exc}); is imageio-ffmpeg installed?") from exc


class VideoReader:
    """Decode a video file (or any URL ffmpeg reads) to RGB ``uint8`` frames of shape ``(H, W, 3)``.

    Iterate it once; use it as a context manager so ffmpeg is stopped if you stop early.

    Args:
        source: file path or URL.
        size_wh: frame size; probed from the file when None (required for URLs).
        max_frames: stop after this many frames.
        info: the file's :class:`VideoInfo` if already probed.
        threads: decoder threads (0 = ffmpeg's choice, one per core and more).

    Raises:
        VideoError: ffmpeg failed (its message, credentials redacted) or the file is not a video.
    """

    def __init__(self, source: str | Path, *, size_wh: tuple[int, int] | None = None,
                 max_frames: int | None = None, info: VideoInfo | None = None, threads: int = 0) -> None:
        self.source = str(source)
        self.threads = threads
        self.info = info
        if size_wh is None and info is None:
            self.info = probe_video(source)
        if size_wh is None:
            size_wh = self.info.size_wh
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.max_frames = max_frames
        self._proc: subprocess.Popen | None = None
        self._stderr: _StderrTail | None = None
        self.messages: list[str] = []  # ffmpeg's errors of a decode that still ended normally (corrupt data)

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        width, height = self.size_wh
        # Fast path: 4:2:0 sources come over the pipe as yuv420p (half the bytes, no conversion in ffmpeg) and
        # OpenCV's SIMD code makes RGB; other pixel formats (and odd sizes) are converted to rgb24 by ffmpeg.
        yuv = (self.info is not None and self.info.pix_fmt in _YUV420 and width % 2 == 0 and height % 2 == 0)
        frame_bytes = width * height * 3 // 2 if yuv else width * height * 3
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
        if self.threads:
            args += ["-threads", str(self.threads)]
        args += ["-i", self.source, "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo",
                 "-pix_fmt", "yuv420p" if yuv else "rgb24"]
        if self.max_frames is not None:
            args += ["-frames:v", str(int(self.max_frames))]
        args.append("pipe:1")
        self._proc = _popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=frame_bytes)
        self._stderr = _StderrTail(self._proc.stderr)
        count = 0
        try:
            while self.max_frames is None or count < self.max_frames:
                data = self._read_exact(frame_bytes)
                if data is None:
                    break
                count += 1
                if yuv:
                    yield cv2.cvtColor(np.frombuffer(data, np.uint8).reshape(height * 3 // 2, width),
                                       cv2.COLOR_YUV2RGB_I420)
                else:
                    yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
            else:
                return
            code = self._proc.wait()
            if code != 0:
                raise VideoError(f"ffmpeg could not decode {redact(self.source)} (exit code {code}):\n"
                                 f"{self._stderr.text()}")
            self.messages = [line for line in self._stderr.text().splitlines() if line.strip()]
        finally:
            self.close()

    def _read_exact(self, size: int) -> bytes | None:
        assert self._proc is not None and self._proc.stdout is not None
        chunks, remaining = [], size
        while remaining:
            chunk = self._proc.stdout.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining == size:
            return None
        if remaining:
            raise VideoError(f"{redact(self.source)}: truncated frame from ffmpeg ({size - remaining} of {size} bytes)")
        return b"".join(chunks)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        if proc.stdout:
            proc.stdout.close()
        proc.wait()


@dataclass
class InputCheck:
    """Did a video file give every frame it declares? (see :func:`check_input`)

    Attributes:
        frames_read: frames decoded. frames_declared: frames the container declares (or duration x rate; None
            when unknown), up to ``max_frames``. exact: the declared count is the container's, not an estimate.
        decoder_messages: what ffmpeg reported while decoding (corrupt or missing data).
    """

    source: str
    frames_read: int
    frames_declared: int | None
    exact: bool = True
    decoder_messages: list[str] | None = None

    @property
    def complete(self) -> bool:
        short = self.frames_declared is not None and self.frames_read < self.frames_declared - (0 if self.exact else 1)
        return not short and not self.decoder_messages

    @property
    def message(self) -> str:
        parts = []
        if self.frames_declared is not None and self.frames_read < self.frames_declared:
            parts.append(f"ended early: {self.frames_read} of the {self.frames_declared} frames it declares were "
                         f"decoded")
        if self.decoder_messages:
            parts.append("ffmpeg reported: " + " | ".join(self.decoder_messages[-3:]))
        return f"{self.source}: the video is truncated or corrupt ({'; '.join(parts)}). Re-copy or re-encode it."

    def to_dict(self) -> dict:
        return {"frames_read": self.frames_read, "frames_declared": self.frames_declared,
                "declared_is_estimate": not self.exact, "complete": self.complete,
                "decoder_messages": list(self.decoder_messages or [])}


def check_input(source: str | Path, info: VideoInfo, frames_read: int, *, max_frames: int | None = None,
                decoder_messages: list[str] | None = None) -> InputCheck:
    """Compare the frames decoded from `source` with those `info` declares (capped at `max_frames`)."""
    declared, exact = (info.frame_count, True) if info.frame_count > 0 else (info.expected_frames, False)
    if declared is not None and max_frames is not None:
        declared = min(declared, max_frames)
    return InputCheck(source=redact(str(source)), frames_read=frames_read, frames_declared=declared, exact=exact,
                      decoder_messages=list(decoder_messages or []))


def read_frames(source: str | Path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Generator of RGB frames of a video file (see :class:`VideoReader`)."""
    with VideoReader(source, max_frames=max_frames) as reader:
        yield from reader


class VideoWriter:
    """Encode RGB ``uint8`` frames to an H.264/yuv420p file, each frame once, at an exact rate.

    Args:
        path: output file, with a suffix of :data:`VIDEO_OUTPUT_FORMATS` (``.mp4``, ``.m4v``, ``.mov``, ``.mkv``,
            ``.avi``).
        fps: frame rate, exact (``Fraction(30000, 1001)``, ``"30000/1001"``, ``25``).
        size_wh: size of the frames you will write; the file is ``even_size(*size_wh)`` (padded).
        audio_from: a file whose first audio stream is carried over (copied if AAC/MP3, else encoded to AAC).
            Ignored when it has no audio.
        audio_duration_s: cut the audio to this length (e.g. the duration of the frames you write).
        encoder: the H.264 settings (:class:`Encoder`; default crf 23, ``ultrafast``).
        threads: libx264 threads (0 = ffmpeg's choice).

    On leaving the ``with`` block normally the file is finalised and renamed to `path`; on an exception
    (including ``KeyboardInterrupt``) ffmpeg is killed and the temporary file removed.

    Raises:
        VideoError: ffmpeg failed; the message holds ffmpeg's last lines (credentials redacted).
    """

    def __init__(self, path: str | Path, fps: str | float | Fraction, size_wh: tuple[int, int], *,
                 audio_from: str | Path | None = None, audio_duration_s: float | None = None,
                 encoder: Encoder | None = None, threads: int = 0) -> None:
        check_video_output(path)
        self.path = Path(path)
        self.fps = parse_rate(fps)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        if min(self.size_wh) < 1:
            raise VideoError(f"frame size {self.size_wh} must be positive")
        self.output_size_wh = even_size(*self.size_wh)
        self.audio_from = audio_from
        self.audio_duration_s = audio_duration_s
        self.encoder, self.threads = encoder or Encoder(), threads
        self.frames_written = 0
        self._proc: subprocess.Popen | None = None
        self._stderr: _StderrTail | None = None
        self._tmp: Path | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:
        if self._proc is not None:
            return
        self._tmp = make_partial(self.path)
        try:
            self._proc = _popen(self._command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        except BaseException:
            self._cleanup()
            raise
        self._stderr = _StderrTail(self._proc.stderr)

    def _command(self) -> list[str]:
        width, height = self.size_wh
        fmt = VIDEO_OUTPUT_FORMATS[self.path.suffix.lower()]
        rate = f"{self.fps.numerator}/{self.fps.denominator}"
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "{}x{}".format(*self.output_size_wh),
                "-r", rate, "-i", "pipe:0"]
        audio_codec = self._source_audio_codec()
        if audio_codec:
            if self.audio_duration_s is not None:
                args += ["-t", f"{float(self.audio_duration_s):.6f}"]
            args += ["-vn", "-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a:0"]
            args += ["-c:a", "copy"] if audio_codec in _COPYABLE_AUDIO and fmt != "matroska" else \
                ["-c:a", "aac", "-b:a", "128k"]
        args += ["-c:v", "libx264", "-preset", self.encoder.preset, "-crf", str(self.encoder.crf), "-pix_fmt", "yuv420p",
                 "-fps_mode", "passthrough"]
        if self.threads:
            args += ["-threads", str(self.threads)]
        if fmt in ("mp4", "mov"):
            args += ["-movflags", "+faststart"]
        args += ["-f", fmt, str(self._tmp)]
        return args

    def _source_audio_codec(self) -> str | None:
        if self.audio_from is None:
            return None
        try:
            return probe_video(self.audio_from).audio_codec
        except VideoError:
            logger.warning("%s: cannot read its audio; writing video only", redact(str(self.audio_from)))
            return None

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``uint8`` frame of shape ``(height, width, 3)``."""
        if self._proc is None:
            if self._tmp is not None:
                raise VideoError(f"{self.path}: the writer is closed")
            self.open()
        width, height = self.size_wh
        frame = np.asarray(frame)
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise VideoError(f"frame of shape {frame.shape} {frame.dtype}; this writer takes ({height}, {width}, 3)"
                             " uint8 RGB frames")
        try:
            self._proc.stdin.write(self._to_yuv420(frame).data)
        except (BrokenPipeError, OSError) as exc:
            code = self._proc.wait()
            raise VideoError(f"ffmpeg stopped while writing {self.path} (exit code {code}):\n"
                             f"{self._stderr.text()}") from exc
        self.frames_written += 1

    def _to_yuv420(self, frame: np.ndarray) -> np.ndarray:
        """RGB -> planar yuv420p (BT.601, limited range, as ffmpeg's own conversion), padded to even sides with
        black. OpenCV's SIMD conversion is several times cheaper than ffmpeg's and halves the bytes piped."""
        import cv2

        width, height = self.size_wh
        if (width, height) != self.output_size_wh:
            padded = np.zeros((self.output_size_wh[1], self.output_size_wh[0], 3), np.uint8)
            padded[:height, :width] = frame
            frame = padded
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)

    def close(self) -> Path:
        """Finish the file and move it to its final name. Returns the path."""
        if self._proc is None:
            if self._tmp is None:
                self.open()  # no frame written: let ffmpeg fail with its own message
            else:
                return self.path
        proc = self._proc
        try:
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            code = proc.wait()
            if code != 0:
                raise VideoError(f"ffmpeg failed writing {self.path} (exit code {code}):\n{self._stderr.text()}")
            if self.frames_written == 0:
                raise VideoError(f"{self.path}: no frame was written")
            os.replace(self._tmp, self.path)
        except BaseException:
            self._cleanup()
            raise
        self._proc = None
        logger.debug("wrote %s (%d frames)", self.path, self.frames_written)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary file; nothing is left under the final name."""
        self._cleanup()

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            proc.wait()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
