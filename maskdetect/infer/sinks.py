"""Where results go: annotated images, an H.264 video, JSON records, a window or a notebook.

Every sink takes one :class:`FrameResult` per frame in :meth:`Sink.write`, is finalised by :meth:`Sink.close`,
and leaves nothing behind after :meth:`Sink.abort` (outputs are written under temporary names and renamed).
:func:`open_sinks` picks the sinks for a source and the outputs asked for.

* :class:`ImageSink` — annotated images into a folder (file names kept), or one image path.
* :class:`VideoSink` — H.264 through :class:`maskdetect.infer.video.VideoWriter`, encoded by a writer thread. For
  live sources it fills real-time slots: the recording has a constant rate and each processed frame covers the
  time until the next one (or is skipped if the model outruns the rate), so a minute of stream is a minute of
  video however fast the model is.
* :class:`JsonSink` — the detections as JSON records, streamed to a temporary file (never all in memory) and
  renamed at the end: the file is valid JSON or absent.
* :class:`DisplaySink` — an OpenCV window (GUI build and a display needed), an updating image in Jupyter, or a
  camera's own ``show`` (the Colab page); q or Esc in the window stops the loop.

:func:`output_path` reads ``--out`` (a trailing ``/`` or an existing folder means a folder) and
:func:`check_outputs` is the one check of every output of a run, the observer's included.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, DataError
from maskdetect.infer.sources import CameraFrames, Frame, Source
from maskdetect.infer.video import Encoder, check_video_output
from maskdetect.media import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

OUTPUT_COMMAND = "predict"  # the owner named in the marker of an output folder of annotated images
#: Annotated frames queued for the encoder thread.
ENCODE_QUEUE = 8
DISPLAY_MODES = ("auto", "window", "notebook", "none")


@dataclass
class FrameResult:
    """What the loop made of one frame: its detections (after the observer), JSON records and drawing."""

    frame: Frame
    detections: Detections
    records: list[dict[str, Any]] = field(default_factory=list)
    annotated: np.ndarray | None = field(default=None, repr=False)


class Sink(Protocol):
    """An output of the frame loop."""

    #: The loop draws the frame only if some sink wants the drawing.
    needs_image: bool
    #: The file or folder written (None for displays): the monitor's summary goes beside the first one.
    path: Path | None

    def write(self, result: FrameResult) -> bool:
        """Take one frame; False asks the loop to stop (a closed window)."""

    def close(self) -> None:
        """Finalise the output (called once, after the last frame)."""

    def abort(self) -> None:
        """Leave nothing behind (called instead of :meth:`close` on any error or interrupt)."""


# -- images -------------------------------------------------------------------------------------------------
def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB image atomically (format from the suffix)."""
    import cv2

    from maskdetect.fileio import atomic_path

    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: OpenCV cannot encode images with suffix {path.suffix!r}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path


class ImageSink:
    """Annotated images: into folder `path` under their own file names, or (`single`, with an image suffix) to
    the file `path` itself. In a folder, other files are kept, and a file of the same name is replaced only if
    an earlier run wrote it (listed in the folder's marker, see :mod:`maskdetect.guard`)."""

    needs_image = True

    def __init__(self, path: str | Path, *, single: bool = False) -> None:
        self.path = Path(path)
        self._to_file = single and self.path.suffix.lower() in IMAGE_SUFFIXES
        self._written: list[str] = []

    def write(self, result: FrameResult) -> bool:
        if self._to_file:
            write_image(self.path, result.annotated)
            return True
        from maskdetect.guard import check_new_files

        name = result.frame.name or f"{result.frame.index}.jpg"
        if name not in self._written:
            check_new_files(self.path, [name], OUTPUT_COMMAND)
        write_image(self.path / name, result.annotated)
        self._written.append(name)
        return True

    def close(self) -> None:
        from maskdetect.guard import record_files

        if self._written:
            record_files(self.path, self._written, OUTPUT_COMMAND)

    abort = close  # the images written are ours too: a later run may replace them


# -- video --------------------------------------------------------------------------------------------------
class VideoSink:
    """An H.264 video (``.mp4``) of the annotated frames, encoded by a thread; opened at the first frame.

    Args:
        path: output file.
        rate: frame rate (exact: a ``Fraction`` such as 30000/1001).
        realtime: fill the slots of the constant-rate video by the frames' ``time_s`` (live sources); else
            every frame once.
        audio_from, audio_duration_s: carry this file's audio over, cut to this length.
        encoder, threads: the H.264 settings and ffmpeg threads (see :class:`~maskdetect.infer.video.VideoWriter`).
    """

    needs_image = True

    def __init__(self, path: str | Path, rate: float | str | Fraction, *, realtime: bool = False,
                 audio_from: str | Path | None = None, audio_duration_s: float | None = None,
                 encoder: Encoder | None = None, threads: int = 0) -> None:
        from maskdetect.infer.video import parse_rate

        check_video_output(path)
        self.path = Path(path)
        self.rate = parse_rate(rate)
        self.realtime = realtime
        self._options = dict(audio_from=audio_from, audio_duration_s=audio_duration_s, encoder=encoder,
                             threads=threads)
        self._writer: Any = None
        self._queue: queue.Queue = queue.Queue(ENCODE_QUEUE)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.frames_written = 0  # slots filled so far (counted when queued)

    def _open(self, image: np.ndarray) -> None:
        from maskdetect.infer.video import VideoWriter

        height, width = image.shape[:2]
        self._writer = VideoWriter(self.path, self.rate, (width, height), **self._options)
        self._writer.open()
        self._thread = threading.Thread(target=self._encode, name="video-writer", daemon=True)
        self._thread.start()

    def _encode(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                image, copies = item
                for _ in range(copies):
                    self._writer.write(image)
        except BaseException as exc:  # re-raised in the loop's thread
            self._error = exc

    def write(self, result: FrameResult) -> bool:
        if self._writer is None:
            self._open(result.annotated)
        copies = 1
        if self.realtime:  # this frame covers the slots up to the next frame's capture time
            copies = max(0, int(result.frame.time_s * self.rate) + 1 - self.frames_written)
        if copies:
            self._put((result.annotated, copies))
            self.frames_written += copies
        return True

    def _put(self, item: Any) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        if self._writer is None:
            return
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._writer.close()

    def abort(self) -> None:
        if self._writer is None:
            return
        self._writer.abort()  # the encoder's next write fails and the thread ends
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put_nowait(None)
        self._thread.join(timeout=5)


# -- JSON records -------------------------------------------------------------------------------------------
class JsonSink:
    """``[{**frame.tag, "bbox_xyxy", "label", "score", ...tracker fields}, ...]``: each frame's records are
    written as they come to a temporary file beside `path` (one record a line), which is renamed to `path` at
    the end. Memory stays flat however long the run; the file is valid JSON, or absent."""

    needs_image = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._tmp: Path | None = None
        self._file: Any = None

    def _open(self) -> None:
        from maskdetect.fileio import make_partial

        self._tmp = make_partial(self.path, suffix=self.path.suffix)
        self._file = open(self._tmp, "w", encoding="utf-8")
        self._file.write("[")

    def write(self, result: FrameResult) -> bool:
        from maskdetect.fileio import json_default

        if self._file is None:
            self._open()
        for record in result.records:
            self._file.write(("\n" if self.count == 0 else ",\n") + json.dumps(record, default=json_default))
            self.count += 1
        return True

    def close(self) -> None:
        if self._file is None:
            self._open()
        self._file.write("\n]\n" if self.count else "]\n")
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


# -- display ------------------------------------------------------------------------------------------------
def has_gui() -> bool:
    """True when ``--show`` can open a window here: a display, and OpenCV built with a GUI or else Tk
    (:class:`~maskdetect.infer.window.TkWindow`)."""
    return why_no_window() is None


def opencv_has_gui() -> bool:
    """True when this OpenCV is built with a GUI backend (``opencv-python``, not ``-headless``)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("", "NONE", "NO")
    return False


def why_no_window() -> str | None:
    """Why no window can open here, with the fix; None when one can (OpenCV's, or a Tk window where OpenCV is the
    headless build that servers and Colab need)."""
    import os
    import sys

    from maskdetect.infer.window import why_no_tk

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display (DISPLAY and WAYLAND_DISPLAY are unset): a window needs a desktop session"
    if opencv_has_gui():
        return None
    tk = why_no_tk()
    if tk is None:
        return None
    return f"this OpenCV is a build without a GUI (opencv-python-headless) and {tk}"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where frames are shown inline with IPython.display)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class DisplaySink:
    """Shows the annotated frames: a window (OpenCV's, or Tk's where OpenCV is headless), an updating image in
    Jupyter, a `show` callable, or nothing.

    It never stops the loop by failing: ``"window"`` (or True, ``--show``) where no window can open logs the
    reason and its fix and shows the frames inline in Jupyter or nowhere; a window that fails later (display
    closed) is dropped with a warning.

    Args:
        mode: ``"auto"`` (window if possible, else inline in Jupyter, else none), ``"window"``, ``"notebook"``,
            ``"none"``, or True (as ``"window"``) / False.
        title: window title.
        show: called with each annotated RGB frame instead (e.g. the Colab camera's page).
        hold: still images: the window keeps each image until a key is pressed (q or Esc stops).
    """

    needs_image = True
    path = None

    def __init__(self, mode: str | bool = "auto", title: str = "maskdetect", *,
                 show: Callable[[np.ndarray], Any] | None = None, hold: bool = False) -> None:
        self.hold = hold
        if show is not None:
            mode = "callback"
        elif mode in ("auto", "window", True):
            reason = why_no_window()
            fallback = "notebook" if in_notebook() else "none"
            if reason is not None and mode != "auto":
                logger.warning("no window: %s. %s", reason,
                               "Frames are shown in the notebook instead." if fallback == "notebook" else
                               "Frames are not shown (the recording and JSON are written as asked).")
            mode = "window" if reason is None else fallback
        elif mode is False:
            mode = "none"
        if mode not in ("window", "notebook", "none", "callback"):
            raise ConfigError(f"display={mode!r}: use 'auto', 'window', 'notebook' or 'none'")
        self.mode, self.title, self._show, self._handle = mode, title, show, None
        self.tk = None
        if mode == "window" and not opencv_has_gui():
            from maskdetect.infer.window import TkWindow

            self.tk = TkWindow(title)
        self.needs_image = mode != "none"

    def write(self, result: FrameResult) -> bool:
        """Show the frame; False when the user asked to stop (q or Esc in the window)."""
        import cv2

        frame = result.annotated
        if self.mode == "callback":
            self._show(frame)
        elif self.mode == "window" and self.tk is not None:
            import tkinter

            try:
                return self.tk.show(frame, hold=self.hold)
            except tkinter.TclError as exc:
                logger.warning("the window failed (%s); going on without it", str(exc).strip())
                self.mode = "none"
        elif self.mode == "window":
            try:
                cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                return (cv2.waitKey(0 if self.hold else 1) & 0xFF) not in (ord("q"), 27)
            except cv2.error as exc:
                logger.warning("the window failed (%s); going on without it", str(exc).strip().splitlines()[-1])
                self.mode = "none"
        elif self.mode == "notebook":
            from IPython.display import Image, display

            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            image = Image(data=jpeg.tobytes(), format="jpeg")
            if self._handle is None:
                self._handle = display(image, display_id=True)
            else:
                self._handle.update(image)
        return True

    def close(self) -> None:
        if self.tk is not None:
            self.tk.close()
        elif self.mode == "window":
            import cv2

            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass

    abort = close


# -- choosing -----------------------------------------------------------------------------------------------
def _names_a_folder(out: str | Path) -> bool:
    """``--out`` ending in ``/`` (a folder, created if needed) or naming an existing folder."""
    text = os.fspath(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def _images_into_folder(source: Source, out: str | Path) -> bool:
    """Still images go into folder `out`, unless one image goes to an image file name."""
    return not (source.kind == "image" and not _names_a_folder(out) and Path(out).suffix.lower() in IMAGE_SUFFIXES)


def output_path(source: Source, out: str | Path | None) -> str | Path | None:
    """Where ``--out`` puts the annotated output of `source`: for a video or a live source, a folder (a trailing
    ``/`` or an existing folder) receives ``<source name>.mp4``, and a file name must have a video suffix
    (:data:`~maskdetect.infer.video.VIDEO_OUTPUT_FORMATS`); still images keep `out` as given (see
    :class:`ImageSink`).

    Raises:
        ConfigError: a video output name with a suffix the writer cannot honour.

    Example:
        >>> from maskdetect.infer.sources import Source
        >>> video = Source("clip", "clip.mkv"); video.fps = 25
        >>> str(output_path(video, "results/"))
        'results/clip.mp4'
    """
    if out is None or source.fps is None:
        return out
    if _names_a_folder(out):
        return Path(out) / f"{source.name}.mp4"
    check_video_output(out)
    return Path(out)


def check_outputs(source: Source, out: str | Path | None, json_path: str | Path | None, *,
                  inputs: Mapping[str, str | Path | None] | None = None, observer: Any = None) -> None:
    """The one check of every output of a run, before any model loads or any frame is read: refuse outputs
    that are or lie inside the source or another input (`inputs`, e.g. ``{"--model": path}``), an output folder
    holding them, outputs that collide (:func:`maskdetect.guard.check_paths`), annotated images that would
    overwrite files an earlier ``predict`` did not write, and a video name whose suffix cannot be written. The
    observer's own files (``observer.planned_outputs``: summary, plot, events, review folder) are checked with
    the rest.

    Raises:
        OutputError: naming both paths. ConfigError: a video suffix that cannot be written.
    """
    from maskdetect.guard import check_new_files, check_paths

    files = getattr(source, "paths", None) or []
    ins: dict[str, str | Path | None] = {"--source": source.path, **(inputs or {})}
    if source.path is None:  # a glob: each file it matched
        ins.update({f"--source {p}": p for p in files})
    outs: dict[str, str | Path | None] = {"--out": out, "--json": json_path}
    if observer is not None and source.fps is not None:
        written = [Path(p) for p in (out, json_path) if p is not None]
        outs.update(observer.planned_outputs(source.info, written))
    images_folder = out is not None and source.fps is None and _images_into_folder(source, out)
    check_paths(ins, outs, folders=("--out",) if images_folder else ())
    if images_folder and files:
        check_new_files(out, [p.name for p in files], OUTPUT_COMMAND)
    if out is not None and source.fps is not None:
        check_video_output(out)


def open_sinks(source: Source, out: str | Path | None = None, json_path: str | Path | None = None, *,
               display: str | bool = "auto", record_fps: float | str | Fraction | None = None,
               keep_audio: bool = True, encoder: Encoder | None = None, ffmpeg_threads: int = 0) -> list[Sink]:
    """The sinks for `source`: `out` as annotated images (still images) or an H.264 video (videos: every frame,
    the source's exact rate and audio; live sources: a real-time recording at `record_fps`, default the
    source's), `json_path` as JSON records, and a display (`display`, see :class:`DisplaySink`): for live
    sources always (``"auto"``: a window where one can open), for files when asked (``"window"``,
    ``"notebook"``, True). It checks nothing: :func:`check_outputs` does, once, before.
    """
    sinks: list[Sink] = []
    if out is not None:
        if source.fps is None:
            sinks.append(ImageSink(out, single=not _images_into_folder(source, out)))
        elif source.live:
            sinks.append(VideoSink(out, record_fps or source.fps, realtime=True, encoder=encoder,
                                   threads=ffmpeg_threads))
        else:
            audio_s = source.total / source.fps if source.total else None
            sinks.append(VideoSink(out, source.fps, audio_from=source.path if keep_audio else None,
                                   audio_duration_s=audio_s, encoder=encoder, threads=ffmpeg_threads))
    if json_path is not None:
        sinks.append(JsonSink(json_path))
    if source.live or display in ("window", "notebook", True):
        show = getattr(source.camera, "show", None) if isinstance(source, CameraFrames) else None
        sinks.append(DisplaySink(display, title=f"maskdetect: {source.location}", show=show,
                                 hold=source.fps is None))
    return sinks


__all__ = ["FrameResult", "Sink", "ImageSink", "VideoSink", "JsonSink", "DisplaySink", "check_outputs", "open_sinks",
           "output_path", "write_image", "has_gui", "in_notebook", "opencv_has_gui", "why_no_window"]
