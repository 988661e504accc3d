"""Webcams and network streams: live detection with the newest frame only, display, and recording.

* :class:`LatestFrameCapture` reads a ``cv2.VideoCapture`` (webcam index, ``rtsp://``/``http://`` URL, or a
  file played as if live) in a thread and hands over only the newest frame: when inference is slower than the
  camera, stale frames are dropped instead of queueing up, so the lag never grows.
* :func:`run_stream` detects on each frame it takes, shows it (an OpenCV window when the GUI build of OpenCV
  and a display are there; an updating image in Jupyter), and records the annotated frames to an H.264 file
  through :class:`maskdetect.infer.video.VideoWriter`. Ctrl-C (``KeyboardInterrupt``) is the normal way to stop:
  the recording is finalised and playable.

The recording is real time: it has a constant rate (`record_fps`, by default the camera's) and each
processed frame is written as many times as needed to cover the time until the next one (or skipped if the
model outruns the rate), so a minute of stream is a minute of video however fast the model is.

URLs may hold passwords (``rtsp://user:pass@cam/...``); they are only ever logged redacted.

Example:
    >>> predictor = Predictor("exports/demo/saved_model")                               # doctest: +SKIP
    >>> run_stream(predictor, 0, record_path="webcam.mp4", duration_s=30)             # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from maskdetect.errors import ConfigError, VideoError
from maskdetect.redact import redact
from maskdetect.infer.video import VideoWriter, parse_rate

logger = logging.getLogger(__name__)

#: Recording rate when the source does not report a sensible one.
DEFAULT_RECORD_FPS = Fraction(30)


def has_gui() -> bool:
    """True when ``cv2.imshow`` can open a window: OpenCV built with a GUI backend, and (on Linux) a display."""
    import os
    import sys

    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            if line.split(":", 1)[1].strip().upper() in ("", "NONE", "NO"):
                return False
            break
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return True


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where frames are shown inline with IPython.display)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


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
        fps: the rate the source reports (None if it reports none).

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
        if self._factory is None:
            import cv2

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
        except Exception:
            fps = 0.0
        self.fps = fps if 0 < fps <= 240 else None
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


class _Display:
    """An OpenCV window, an updating image in Jupyter, or nothing."""

    def __init__(self, mode: str | bool, title: str) -> None:
        if mode == "auto":
            mode = "window" if has_gui() else "notebook" if in_notebook() else "none"
        elif mode is True:
            mode = "window" if has_gui() else "notebook" if in_notebook() else "none"
            if mode == "none":
                logger.warning("no display: OpenCV has no GUI here (opencv-python-headless) and this is not "
                               "a notebook; frames are not shown")
        elif mode is False:
            mode = "none"
        if mode not in ("window", "notebook", "none"):
            raise ConfigError(f"display={mode!r}: use 'auto', 'window', 'notebook' or 'none'")
        self.mode, self.title, self._handle = mode, title, None

    def show(self, frame: np.ndarray) -> bool:
        """Show an RGB frame; False when the user asked to stop (q or Esc in the window)."""
        import cv2

        if self.mode == "window":
            cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)
        if self.mode == "notebook":
            from IPython.display import Image, display

            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            image = Image(data=jpeg.tobytes(), format="jpeg")
            if self._handle is None:
                self._handle = display(image, display_id=True)
            else:
                self._handle.update(image)
        return True

    def close(self) -> None:
        if self.mode == "window":
            import cv2

            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


def run_stream(predictor: Any, source: int | str, *, record_path: str | Path | None = None,
               json_path: str | Path | None = None, monitor: Any = None, max_frames: int | None = None,
               duration_s: float | None = None, display: str | bool = "auto",
               record_fps: float | str | Fraction | None = None, pace: bool | None = None,
               capture_factory: Callable[[Any], Any] | None = None, annotator: Any = None,
               progress: bool = True, read_timeout_s: float = 10.0):
    """Detect live on a webcam or stream until it ends, `max_frames`/`duration_s` is reached, or Ctrl-C.

    Args:
        predictor: a :class:`maskdetect.infer.predictor.Predictor`.
        source: webcam index (``0``), stream URL, or a video file played as if live.
        record_path: record the annotated stream here (H.264 ``.mp4``, real time, finalised on Ctrl-C).
        json_path: write ``[{"frame": source frame index, "time_s", "bbox_xyxy", "label", "score", ...}]``.
        monitor: tracker/alerter (see :func:`maskdetect.infer.predictor.predict_video`); needs `record_path` or
            `json_path`, beside which it writes its summary.
        max_frames: stop after processing this many frames; duration_s: after this many seconds.
        display: ``"auto"`` (window if possible, else inline in Jupyter, else none), ``"window"``,
            ``"notebook"``, ``"none"``, or True/False.
        record_fps: rate of the recording (default: the source's, else 30).
        pace: read a file no faster than its frame rate (default: True for files, False for cameras/URLs).
        capture_factory: replaces ``cv2.VideoCapture`` (tests, custom cameras).

    Returns:
        A :class:`maskdetect.infer.predictor.PredictionSummary` (``frames`` = frames processed).
    """
    from tqdm.auto import tqdm

    from maskdetect.infer.annotate import FrameAnnotator
    from maskdetect.fileio import atomic_write_json
    from maskdetect.infer.predictor import PredictionSummary, _accepts

    if monitor is not None and record_path is None and json_path is None:
        raise ConfigError("monitoring a stream needs record_path and/or json_path (its summary goes beside them)")
    is_file = isinstance(source, (str, Path)) and Path(str(source)).is_file()
    pace_fps = None
    if pace if pace is not None else is_file:
        pace_fps = _file_fps(source) if is_file else None
    capture = LatestFrameCapture(source, capture_factory=capture_factory, pace_fps=pace_fps)
    annotator = annotator or FrameAnnotator(predictor.class_names)
    view = _Display(display, title=f"maskdetect: {redact(str(source))}")
    summary = PredictionSummary(kind="webcam" if isinstance(source, int) else "stream",
                                out_path=Path(record_path) if record_path is not None else None)
    monitor_takes_frame = monitor is not None and _accepts(monitor.update, "frame")
    writer: VideoWriter | None = None
    bar = tqdm(desc="stream", unit="frame", disable=not progress, dynamic_ncols=True)
    capture.start()
    rate = parse_rate(record_fps) if record_fps else (parse_rate(capture.fps) if capture.fps else DEFAULT_RECORD_FPS)
    started = time.monotonic()
    first_stamp: float | None = None
    interrupted = False
    try:
        try:
            while max_frames is None or summary.frames < max_frames:
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
                item = capture.read(timeout=read_timeout_s)
                if item is None:
                    logger.info("%s ended", redact(str(source)))
                    break
                index, frame, stamp = item
                first_stamp = stamp if first_stamp is None else first_stamp
                time_s = stamp - first_stamp
                detections = predictor.predict(frame)
                banner = None
                if monitor is not None:
                    if monitor_takes_frame:
                        detections = monitor.update(detections, summary.frames, time_s, frame=frame)
                    else:
                        detections = monitor.update(detections, summary.frames, time_s)
                    banner = monitor.banner(summary.frames)
                summary.records += detections.to_records(predictor.class_names, frame=index,
                                                         time_s=round(time_s, 3))
                summary.detections += len(detections)
                annotated = annotator.annotate(frame, detections, banner=banner)
                if record_path is not None:
                    if writer is None:
                        height, width = frame.shape[:2]
                        writer = VideoWriter(record_path, rate, (width, height))
                        writer.open()
                    # real time: this frame covers the slots up to the next frame's capture time
                    due = int(time_s * rate) + 1
                    for _ in range(max(0, due - writer.frames_written)):
                        writer.write(annotated)
                summary.frames += 1
                bar.update(1)
                if not view.show(annotated):
                    break
        except KeyboardInterrupt:
            interrupted = True
            logger.info("interrupted: finishing the recording")
        capture.stop()
        summary.seconds = time.monotonic() - started
        if summary.frames == 0 and not interrupted:
            raise VideoError(f"no frame could be read from {redact(str(source))}")
        if writer is not None:
            writer.close()
        if monitor is not None:
            monitor.close(record_path if record_path is not None else json_path)
        if json_path is not None:
            summary.json_path = atomic_write_json(json_path, summary.records)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        capture.stop()
        bar.close()
        view.close()
    logger.info("%s: %d frames processed (%d dropped as stale), %.1f FPS%s", redact(str(source)), summary.frames,
                capture.frames_dropped, summary.fps, " (stopped by Ctrl-C)" if interrupted else "")
    summary.frames_dropped = capture.frames_dropped
    return summary


def _file_fps(path: str | Path) -> float | None:
    from maskdetect.infer.video import probe_video

    try:
        return float(probe_video(path).fps)
    except VideoError:
        return None
