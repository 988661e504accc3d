"""Where frames come from: image files, a video file, a live camera or stream, the Colab browser camera.

:func:`open_source` turns what a user types (a path, a folder, a webcam index, a URL) into a :class:`Source`: an
iterable of :class:`Frame` (RGB ``uint8`` image, index at the source, time, the fields that name it in JSON
records). :func:`maskdetect.infer.loop.run_loop` is the one loop that consumes them.

* :class:`ImageFiles` — one image or every image of a folder, read one at a time; :class:`ImageArrays` — images
  already in memory.
* :class:`VideoFile` — every frame of a video file, decoded ahead by a thread (a bounded queue), in order.
* :class:`LiveCapture` — a webcam, an ``rtsp://``/``http://`` stream, or a file played as if live, with
  newest-frame semantics (:class:`LatestFrameCapture`): when inference is slower than the camera, stale frames are
  dropped instead of queueing up, so the lag never grows.
* :class:`CameraFrames` — any camera object with ``frames()`` (the Colab browser camera of
  :class:`maskdetect.infer.browser.BrowserWebcam`).

URLs may hold passwords (``rtsp://user:pass@cam/...``); they are only ever logged redacted.

Example:
    >>> source = open_source("clip.mp4")                                              # doctest: +SKIP
    >>> for frame in source: print(frame.index, frame.time_s, frame.image.shape)     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from maskdetect.errors import DataError, VideoError
from maskdetect.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_image  # noqa: F401 - read_image: re-exported
from maskdetect.redact import redact, register_url_secrets

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")
#: Frames a video file is decoded ahead of inference.
PREFETCH_FRAMES = 8


@dataclass(frozen=True)
class Frame:
    """One image from a source.

    Attributes:
        image: RGB ``uint8`` ``(H, W, 3)``.
        index: index at the source (live sources skip the indexes of the stale frames they dropped).
        time_s: seconds since the source's first frame (video files: ``index / fps``); None for still images.
        name: file name of an image file (None otherwise).
        tag: the fields that identify the frame in JSON records (``{"image": stem}``, ``{"frame": i}``, or
            ``{"frame": i, "time_s": t}`` for live sources).
    """

    image: np.ndarray = field(repr=False)
    index: int
    time_s: float | None = None
    name: str | None = None
    tag: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceInfo:
    """What the frame loop tells its observer about the source before the first frame
    (:meth:`maskdetect.infer.loop.FrameObserver.start`).

    Attributes:
        name: what summaries, events and review items call it (a file's stem, or the kind of a live source).
        kind: see :attr:`Source.kind`. location: the source for messages (URLs redacted).
        live: frames arrive in real time. fps: the real frame rate (the file's, the camera's, or the one a live
            source is recorded at); None for still images. size_wh: frame size when known before the first frame.
        total: frames expected, if known. path: the file, for file sources.
    """

    name: str
    kind: str
    location: str
    live: bool = False
    fps: Fraction | None = None
    size_wh: tuple[int, int] | None = None
    total: int | None = None
    path: Path | None = None


class Source:
    """Base of the frame sources: iterate it for :class:`Frame`s, then :meth:`close` it.

    Attributes:
        kind: ``"image"``, ``"folder"``, ``"images"``, ``"video"``, ``"webcam"``, ``"stream"`` or ``"camera"``.
        name: what summaries and events call it (a file's stem, or the kind of a live source).
        location: the source for messages (URLs redacted).
        live: frames arrive in real time (dropped when stale, recorded in real time, Ctrl-C ends it cleanly).
        fps: frame rate (the source's, if it reports one); None for still images.
        total: frames expected, if known.
        path: the file, for file sources (a video's audio comes from it).
        frames_dropped: live sources: frames skipped because newer ones had arrived.
        size_wh: frame size, when known before the first frame.
    """

    kind = "video"
    live = False
    fps: Fraction | None = None
    total: int | None = None
    path: Path | None = None
    size_wh: tuple[int, int] | None = None
    frames_dropped = 0

    def __init__(self, name: str, location: str) -> None:
        self.name, self.location = name, location

    @property
    def info(self) -> SourceInfo:
        """The source as the loop introduces it to its observer."""
        return SourceInfo(name=self.name, kind=self.kind, location=self.location, live=self.live, fps=self.fps,
                          size_wh=self.size_wh, total=self.total, path=self.path)

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the source (idempotent)."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- still images ---------------------------------------------------------------------------------------------
GLOB_CHARS = "*?["


def is_glob(source: str | Path | int) -> bool:
    """A ``--source`` that is a pattern (``photos/*.jpg``) and not an existing path."""
    text = str(source)
    return isinstance(source, (str, Path)) and any(c in text for c in GLOB_CHARS) and not Path(text).exists()


def expand_glob(pattern: str | Path) -> list[Path]:
    """The files `pattern` matches (``**`` goes into sub-folders), sorted. Raises `DataError` if none."""
    import glob

    found = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
    if not found:
        raise DataError(f"{pattern}: the pattern matches no file")
    return found


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name. Raises `DataError` if there are none, or if two share
    a stem (their JSON records could not be told apart)."""
    folder = Path(folder)
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not p.name.startswith("."))
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return _distinct_stems(images)


def _distinct_stems(images: list[Path]) -> list[Path]:
    """`images`, after checking no two share a stem (or a name: annotated copies go into one folder)."""
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise DataError(f"{stems[p.stem].name} and {p.name} share the stem {p.stem!r}; rename one")
        stems[p.stem] = p
    return images



class ImageFiles(Source):
    """One image file, every image directly in a folder, or the images a glob matched (read one at a time).

    Args:
        path: an image or a folder.
        files: instead of `path`, these image files (a glob's matches: kind ``"images"``, `path` None).
        name: the name of a list of files (the pattern).
    """

    def __init__(self, path: str | Path | None = None, *, files: Sequence[Path] | None = None,
                 name: str = "images") -> None:
        if files is not None:
            super().__init__(name, name)
            self.kind = "images"
            self.paths = _distinct_stems([Path(p) for p in files])
        else:
            path = Path(path)
            super().__init__(path.stem, str(path))
            self.kind = "folder" if path.is_dir() else "image"
            self.path = path
            self.paths = list_images(path) if path.is_dir() else [path]
        self.total = len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            yield Frame(read_image(path), index, name=path.name, tag={"image": path.stem})


class ImageArrays(Source):
    """RGB images already in memory (e.g. decoded from TFRecords), named ``<name>-0000.jpg``, ... in outputs."""

    kind = "images"

    def __init__(self, images: Sequence[np.ndarray], name: str = "image") -> None:
        super().__init__(name, f"{len(images)} images in memory")
        self.images = images
        self.total = len(images)

    def __iter__(self) -> Iterator[Frame]:
        for index, image in enumerate(self.images):
            stem = f"{self.name}-{index:04d}"
            yield Frame(np.asarray(image), index, name=f"{stem}.jpg", tag={"image": stem})


# -- video files ----------------------------------------------------------------------------------------------
class VideoFile(Source):
    """Every frame of a video file, in order, decoded ahead by an ffmpeg process fed to a reader thread.

    Args:
        path: the video file.
        max_frames: decode at most this many frames.
        ffmpeg_threads: decoder threads (0 = ffmpeg's choice).
        strict: a file that ends before the frames it declares, or that ffmpeg reports corrupt, raises a
            VideoError after its last frame (so the loop writes nothing) instead of logging a warning.

    Attributes:
        video: the file's :class:`~maskdetect.infer.video.VideoInfo`.
        input_check: after the last frame, frames read vs declared
            (:class:`~maskdetect.infer.video.InputCheck`).
    """

    def __init__(self, path: str | Path, *, max_frames: int | None = None, ffmpeg_threads: int = 0,
                 strict: bool = False) -> None:
        from maskdetect.infer.video import VideoReader, probe_video

        path = Path(path)
        super().__init__(path.stem, str(path))
        self.path = path
        self.video = probe_video(path)
        self.fps = self.video.fps
        self.size_wh = self.video.size_wh
        total = self.video.expected_frames
        if max_frames is not None:
            total = min(total, max_frames) if total else max_frames
        self.total = total or None
        self._reader = VideoReader(path, info=self.video, max_frames=max_frames, threads=ffmpeg_threads)
        self.max_frames, self.strict = max_frames, strict
        self.input_check: InputCheck | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __iter__(self) -> Iterator[Frame]:
        frames: queue.Queue = queue.Queue(PREFETCH_FRAMES)
        errors: list[BaseException] = []
        end = object()

        def read() -> None:
            try:
                for frame in self._reader:
                    if not _put(frames, frame, self._stop):
                        return
            except BaseException as exc:  # recorded before `end` is queued, so the consumer sees it
                errors.append(exc)
            finally:
                _put(frames, end, self._stop)

        self._thread = threading.Thread(target=read, name="video-reader", daemon=True)
        self._thread.start()
        fps = float(self.fps)
        index = 0
        while True:
            try:
                item = frames.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and frames.empty():
                    raise (errors or [VideoError(f"{self.location}: the reader stopped early")])[0]
                continue
            if item is end:
                if errors:
                    raise errors[0]
                self._check_complete(index)
                return
            yield Frame(item, index, time_s=index / fps, tag={"frame": index})
            index += 1

    def _check_complete(self, frames_read: int) -> None:
        from maskdetect.infer.video import check_input

        if frames_read == 0:
            return  # "no frame could be read" is the loop's error
        self.input_check = check_input(self.location, self.video, frames_read, max_frames=self.max_frames,
                                       decoder_messages=self._reader.messages)
        if self.input_check.complete:
            return
        if self.strict:
            raise VideoError(f"{self.input_check.message} Nothing was written (--strict).")
        logger.warning("%s The outputs cover only what was read (pass --strict to make this an error).",
                       self.input_check.message)

    def close(self) -> None:
        self._stop.set()
        self._reader.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put, waking up regularly to see whether the source is closing. False if it is."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


# -- live sources ---------------------------------------------------------------------------------------------
class LatestFrameCapture:
    """A capture thread that always hands over the newest frame (RGB ``uint8``), dropping stale ones.

    Args:
        source: webcam index, stream URL or video file.
        capture_factory: makes the capture from `source` (default ``cv2.VideoCapture``); anything with
            ``read() -> (ok, bgr_frame)``, ``isOpened()``, ``get(prop)`` and ``release()``.
        pace_fps: read no faster than this (to play a file as if it were a live camera); None: as fast as
            the source gives frames.

    Attributes:
        frames_read: frames taken from the source; frames_dropped: of those, never handed over.
        fps: the rate the source reports (None if it reports none); size_wh: the size it reports (or None).

    Example:
        >>> with LatestFrameCapture(0) as capture:                                    # doctest: +SKIP
        ...     index, frame, t = capture.read()
    """

    def __init__(self, source: int | str, *, capture_factory: Callable[[Any], Any] | None = None,
                 pace_fps: float | None = None) -> None:
        self.source = source
        self._factory = capture_factory
        self.pace_fps = pace_fps
        self.frames_read = 0
        self.frames_dropped = 0
        self.fps: float | None = None
        self.size_wh: tuple[int, int] | None = None
        self._cond = threading.Condition()
        self._latest: tuple[int, np.ndarray, float] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._capture: Any = None

    def __enter__(self) -> "LatestFrameCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "LatestFrameCapture":
        if self._thread is not None:
            return self
        if isinstance(self.source, str):
            register_url_secrets(self.source)  # OpenCV/ffmpeg messages may quote the password
        if self._factory is None:
            import cv2

            if isinstance(self.source, str) and "://" in self.source:
                # straight to FFmpeg: OpenCV's other backends (CAP_IMAGES) print the whole URL, password included
                capture = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG)
            else:
                capture = cv2.VideoCapture(self.source)
        else:
            capture = self._factory(self.source)
        if not capture.isOpened():
            capture.release()
            raise VideoError(f"cannot open the video source {redact(str(self.source))}; check the webcam index, "
                             "the URL and its credentials, or the file")
        self._capture = capture
        try:
            import cv2

            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
            size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
        except Exception:
            fps, size = 0.0, (0, 0)
        self.fps = fps if 0 < fps <= 240 else None
        self.size_wh = size if min(size) > 0 else None
        self._thread = threading.Thread(target=self._run, name="stream-capture", daemon=True)
        self._thread.start()
        logger.info("reading %s%s", redact(str(self.source)), f" at {self.fps:g} FPS" if self.fps else "")
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if not ok or frame is None:
                    break
                now = time.monotonic()
                if self.pace_fps:
                    due = started + self.frames_read / self.pace_fps
                    if due > now:
                        self._stop.wait(due - now)
                        now = time.monotonic()
                with self._cond:
                    if self._latest is not None:
                        self.frames_dropped += 1
                    self._latest = (self.frames_read, frame, now)
                    self.frames_read += 1
                    self._cond.notify_all()
        except BaseException as exc:  # re-raised by read()
            self._error = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def read(self, timeout: float | None = 10.0) -> tuple[int, np.ndarray, float] | None:
        """``(frame index at the source, RGB frame, capture time.monotonic())`` of the newest frame not handed
        over yet, waiting for one if needed; None once the source has ended.

        Raises:
            VideoError: no frame came within `timeout` seconds, or the capture failed.
        """
        import cv2

        with self._cond:
            if not self._cond.wait_for(lambda: self._latest is not None or self._ended, timeout):
                raise VideoError(f"no frame from {redact(str(self.source))} in {timeout:g} s")
            item, self._latest = self._latest, None
        if item is None:
            if self._error is not None:
                raise VideoError(f"reading {redact(str(self.source))} failed: {self._error}") from self._error
            return None
        index, frame, stamp = item
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        else:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        return index, frame, stamp

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._capture is not None:
            self._capture.release()
            self._capture = None


#: Frame rate assumed for a live source that reports none.
DEFAULT_LIVE_FPS = Fraction(30)


class LiveCapture(Source):
    """A webcam, a network stream, or a file played as if live, newest frame only (opened at once).

    Args:
        source: webcam index, stream URL, or a video file.
        pace: read a file no faster than its frame rate (default: True for files, False for cameras/URLs).
        capture_factory: replaces ``cv2.VideoCapture`` (tests, custom cameras).
        read_timeout_s: how long to wait for a frame before it is an error.
    """

    live = True

    def __init__(self, source: int | str | Path, *, pace: bool | None = None,
                 capture_factory: Callable[[Any], Any] | None = None, read_timeout_s: float = 10.0) -> None:
        is_file = isinstance(source, (str, Path)) and Path(str(source)).is_file()
        self.kind = "webcam" if isinstance(source, int) else "stream"
        super().__init__(self.kind, redact(str(source)))
        file_fps = None
        if is_file:
            from maskdetect.infer.video import probe_video

            self.path = Path(source)
            try:
                file_fps = probe_video(source).fps
            except VideoError:
                file_fps = None
        pace_fps = float(file_fps) if file_fps and (pace if pace is not None else True) else None
        self._capture = LatestFrameCapture(source if not isinstance(source, Path) else str(source),
                                           capture_factory=capture_factory, pace_fps=pace_fps).start()
        from maskdetect.infer.video import parse_rate

        self.fps = file_fps or (parse_rate(self._capture.fps) if self._capture.fps else DEFAULT_LIVE_FPS)
        self.size_wh = self._capture.size_wh
        self.read_timeout_s = read_timeout_s

    @property
    def frames_dropped(self) -> int:  # type: ignore[override]
        return self._capture.frames_dropped

    def __iter__(self) -> Iterator[Frame]:
        first: float | None = None
        while True:
            item = self._capture.read(timeout=self.read_timeout_s)
            if item is None:
                logger.info("%s ended", self.location)
                return
            index, image, stamp = item
            first = stamp if first is None else first
            time_s = stamp - first
            yield Frame(image, index, time_s=time_s, tag={"frame": index, "time_s": round(time_s, 3)})

    def close(self) -> None:
        self._capture.stop()


class CameraFrames(Source):
    """A camera object with ``frames() -> iterator of RGB frames`` (the Colab browser camera), timed on arrival.

    Its ``show(image)``, if any, is where :func:`maskdetect.infer.sinks.open_sinks` displays the annotated frames.
    """

    kind = "camera"
    live = True

    def __init__(self, camera: Any, *, fps: float | None = None) -> None:
        super().__init__("webcam", type(camera).__name__)
        self.camera = camera
        from maskdetect.infer.video import parse_rate

        self.fps = parse_rate(fps) if fps else DEFAULT_LIVE_FPS
        self._frames: Any = None

    def __iter__(self) -> Iterator[Frame]:
        started = time.perf_counter()
        self._frames = self.camera.frames()
        for index, image in enumerate(self._frames):
            time_s = time.perf_counter() - started
            yield Frame(np.asarray(image), index, time_s=time_s, tag={"frame": index, "time_s": round(time_s, 3)})

    def close(self) -> None:
        if self._frames is not None and hasattr(self._frames, "close"):
            self._frames.close()  # releases the camera
        self._frames = None


# -- choosing -------------------------------------------------------------------------------------------------
def source_kind(source: str | Path | int) -> str:
    """``"webcam"`` (an int or digits), ``"stream"`` (rtsp/http/... URL), ``"folder"``, ``"image"`` or
    ``"video"`` (by suffix). Raises `DataError` for a missing path or an unknown suffix."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "webcam"
    text = str(source)
    if text.lower().startswith(STREAM_SCHEMES):
        return "stream"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. --source takes an image, a folder of images, a video "
                        "file, a webcam index (0) or an rtsp:// / http:// URL")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise DataError(f"{path}: unknown file type {suffix!r}; images are {', '.join(IMAGE_SUFFIXES)}, videos "
                    f"{', '.join(VIDEO_SUFFIXES)}")


def open_source(source: Source | str | Path | int | Sequence[np.ndarray], *, live: bool = False,
                max_frames: int | None = None, pace: bool | None = None,
                capture_factory: Callable[[Any], Any] | None = None, ffmpeg_threads: int = 0,
                read_timeout_s: float = 10.0, strict: bool = False) -> Source:
    """The :class:`Source` for an image, a folder of images, a glob of images (``"photos/*.jpg"``), a video
    file, a webcam index, a stream URL, or a list of RGB images in memory.

    Args:
        source: what to read (a :class:`Source` is returned as it is).
        live: play a video file as a live source (newest frame only, paced at its rate unless ``pace=False``).
        max_frames: video files: decode at most this many frames.
        pace, capture_factory, read_timeout_s: live sources (see :class:`LiveCapture`).
        ffmpeg_threads: video files: decoder threads (0 = ffmpeg's choice).
        strict: video files: a truncated or corrupt file is an error, not a warning (see :class:`VideoFile`).

    Raises:
        DataError: a missing path or an unknown suffix; VideoError: a video or camera that cannot be opened.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, (list, tuple)):
        return ImageArrays(source)
    if is_glob(source):
        files = expand_glob(source)
        kinds = {source_kind(p) for p in files}
        if kinds == {"image"}:
            return ImageFiles(files=files, name=str(source))
        if kinds == {"video"} and len(files) == 1:
            return open_source(files[0], live=live, max_frames=max_frames, pace=pace, capture_factory=capture_factory,
                               ffmpeg_threads=ffmpeg_threads, read_timeout_s=read_timeout_s, strict=strict)
        raise DataError(f"{source}: the pattern matches {len(files)} files ({', '.join(sorted(kinds))}); a pattern "
                        f"may match images, or one video (run predict once per video)")
    kind = source_kind(source)
    if kind in ("image", "folder"):
        return ImageFiles(source)
    if kind == "video" and not live:
        return VideoFile(source, max_frames=max_frames, ffmpeg_threads=ffmpeg_threads, strict=strict)
    return LiveCapture(int(source) if kind == "webcam" else source, pace=pace, capture_factory=capture_factory,
                       read_timeout_s=read_timeout_s)


__all__ = ["Frame", "Source", "SourceInfo", "ImageFiles", "expand_glob", "is_glob", "ImageArrays", "VideoFile", "LiveCapture", "CameraFrames",
           "LatestFrameCapture", "open_source", "source_kind", "list_images", "read_image"]
