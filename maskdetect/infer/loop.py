"""The frame loop: the one place where a frame is detected, observed, recorded, drawn and written.

:func:`run_loop` first introduces the source to the observer (``observer.start(source.info, class_names,
outputs)``: the real frame rate, size, name and kind, and the files the sinks write), then per frame does:
``predictor.predict`` -> ``observer.update`` (tracking, counting, alerts) -> ``observer.banner`` -> JSON records
-> ``annotate`` (only if a sink shows or writes images) -> every sink's ``write``. At the end it closes the
progress bar, then the sinks (the video is finalised, the JSON renamed) and the observer (its summary). On an
error, or on Ctrl-C in a file source, every sink and the observer are aborted and nothing is left behind; Ctrl-C
in a live source ends it cleanly (the recording is kept). SIGTERM and SIGHUP (``docker stop``, ``systemctl
stop``, a closed terminal) are Ctrl-C while the loop runs in the main thread.

:func:`predict_source` is what ``maskdetect predict``, the notebooks and the Colab camera run: it checks every
output once (:func:`maskdetect.infer.sinks.check_outputs`, before the model loads when given a path), then
``run_loop(predictor, open_source(...), open_sinks(...))``.

Example:
    >>> predictor = Predictor("workspace/runs/demo/export/saved_model")              # doctest: +SKIP
    >>> summary = predict_source(predictor, "in.mp4", "out.mp4", json_path="out.json")  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from maskdetect.detections import Detections
from maskdetect.errors import VideoError
from maskdetect.fileio import output_lock
from maskdetect.infer.sinks import FrameResult, Sink, check_outputs, open_sinks, output_path
from maskdetect.infer.sources import Source, SourceInfo, open_source
from maskdetect.infer.video import Encoder

if TYPE_CHECKING:
    from maskdetect.infer.predictor import Predictor

logger = logging.getLogger(__name__)

#: Frames whose per-stage times make the speed line's medians (a bounded window: a day-long stream stays small).
SPEED_WINDOW = 10_000
#: Signals that stop a run as Ctrl-C does (what ``docker stop`` / ``systemctl stop`` and a closed terminal send).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@runtime_checkable
class FrameObserver(Protocol):
    """Sees every frame's detections in order, before drawing (:class:`maskdetect.monitor.monitor.Monitor`)."""

    def planned_outputs(self, source: SourceInfo, outputs: Sequence[Path]) -> dict[str, Path]:
        """The files and folders :meth:`start` with these arguments would write, ``{what: path}``, so they are
        checked with the sinks' outputs before any work."""

    def start(self, source: SourceInfo, class_names: Sequence[str], outputs: Sequence[Path]) -> None:
        """Called once before the first frame: the source (real fps, size, name, kind, live or not), the
        model's class names, and the files the sinks write (the observer's own go beside the first one)."""

    def update(self, detections: Detections, frame_index: int, timestamp_s: float | None = None,
               frame: np.ndarray | None = None) -> Detections:
        """The detections of frame `frame_index` (0-based, increasing), possibly changed (track ids, ...)."""

    def banner(self, frame_index: int) -> str | None:
        """Text to draw on that frame (an active alert), or None."""

    def close(self, *, source_frames: dict[str, Any] | None = None) -> Any:
        """Finish after the last frame, write what it writes, return its summary. `source_frames`: video files,
        frames read vs declared (None for other sources)."""

    def abort(self) -> None:
        """The run failed: delete whatever it already wrote (the loop aborts the sinks alike)."""


@dataclass
class PredictionSummary:
    """What a run of the loop did.

    Attributes:
        kind: source kind (``image``, ``folder``, ``images``, ``video``, ``webcam``, ``stream``, ``camera``).
        frames: images or frames processed.
        detections: boxes kept in total.
        seconds: wall time of the loop; fps: frames per second end to end (the one rate a run reports).
        out_path / json_path: where the annotated output and the records went (None if not written).
        frames_dropped: live sources only: frames skipped because newer ones had arrived.
        interrupted: a live source was stopped by Ctrl-C, SIGTERM or SIGHUP (its outputs are complete).
        monitor: what the observer's ``close`` returned (the monitor's summary), if there was one.
        input: video files: frames read vs declared (:meth:`maskdetect.infer.video.InputCheck.to_dict`; also
            the ``"input"`` of the monitor's summary).
        speed: median milliseconds per frame by stage (``preprocess``, ``inference``, ``postprocess``) from the
            predictor's ``speed`` (empty when it has none), over the last :data:`SPEED_WINDOW` frames.
    """

    kind: str
    frames: int = 0
    detections: int = 0
    seconds: float = 0.0
    out_path: Path | None = None
    json_path: Path | None = None
    frames_dropped: int = 0
    interrupted: bool = False
    monitor: Any = field(default=None, repr=False)
    input: dict[str, Any] | None = None
    speed: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def speed_line(self) -> str | None:
        """``Speed: x ms preprocess, y ms inference, z ms postprocess per frame`` (medians), or None."""
        if not self.speed:
            return None
        unit = "image" if self.kind in ("image", "folder", "images") else "frame"
        return "Speed: " + ", ".join(f"{ms:.1f} ms {stage}" for stage, ms in self.speed.items()) + f" per {unit}"


class _StageTimes:
    """The predictor's per-stage milliseconds of the last :data:`SPEED_WINDOW` frames."""

    STAGES = ("preprocess", "inference", "postprocess")

    def __init__(self) -> None:
        self._times: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=SPEED_WINDOW)

    def add(self, predictor: Any) -> None:
        speed = getattr(predictor, "speed", None)
        if speed is not None:
            self._times.append(tuple(float(getattr(speed, f"{s}_ms", 0.0)) for s in self.STAGES))

    def medians(self) -> dict[str, float]:
        if not self._times:
            return {}
        return {s: round(float(m), 2) for s, m in zip(self.STAGES, np.median(np.array(self._times), axis=0))}


def progress_wanted(progress: bool | None) -> bool:
    """`progress`, or when None: on where someone watches (stderr is a terminal, or a Jupyter kernel)."""
    if progress is not None:
        return progress
    from maskdetect.infer.sinks import in_notebook

    try:
        return sys.stderr.isatty() or in_notebook()
    except (AttributeError, ValueError):
        return False


@dataclass
class _Stopping:
    """Set once a stop signal was turned into Ctrl-C, or the outputs are being finished (later ones are ignored)."""

    stopping: bool = False


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[_Stopping]:
    """While inside: SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, once; one arriving after
    that, or once the caller set ``state.stopping`` (the outputs are being finished), is logged and ignored, so
    it cannot cut a recording short. A signal the process ignores (``nohup``) stays ignored. Elsewhere than in the
    main thread (where Python cannot set handlers) it does nothing."""
    state = _Stopping()
    if threading.current_thread() is not threading.main_thread() or not STOP_SIGNALS:
        yield state
        return
    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if state.stopping:
            logger.warning("%s: already stopping, finishing the outputs", name)
            return
        state.stopping = True
        logger.info("%s received: stopping as on Ctrl-C", name)
        raise KeyboardInterrupt

    # an ignored signal stays ignored: `nohup maskdetect predict ...` asks that closing the terminal stop nothing
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _written_paths(source: Source, sinks: Sequence[Sink], observer: FrameObserver | None) -> list[Path]:
    paths = [Path(sink.path) for sink in sinks if sink.path is not None]
    if observer is not None and source.fps is not None:
        paths += list(observer.planned_outputs(source.info, paths).values())
    return paths


def run_loop(predictor: "Predictor", source: Source, sinks: Sequence[Sink] = (), *,
             observer: FrameObserver | None = None, annotator: Any = None, max_frames: int | None = None,
             duration_s: float | None = None, show_fps: bool = False,
             progress: bool | None = None) -> PredictionSummary:
    """Detect in every frame of `source` and hand the results to `sinks` (see the module docstring).

    It does not check the outputs (:func:`predict_source` does, once): callers that compose their own sinks
    (one loop per camera) check them with :func:`maskdetect.infer.sinks.check_outputs` first.

    Args:
        predictor: anything with ``predict(rgb) -> Detections`` and ``class_names`` (and ``speed``, optional).
        source: frames (:func:`maskdetect.infer.sources.open_source`); closed at the end.
        sinks: outputs (:func:`maskdetect.infer.sinks.open_sinks`).
        observer: tracker / alerter, started with the source's real frame rate before the first frame. Ignored,
            with a warning, for still images.
        annotator: draws the frames (default :class:`maskdetect.infer.annotate.FrameAnnotator`).
        max_frames: stop after this many frames; duration_s: after this many seconds.
        show_fps: draw the frames per second beside the observer's banner.
        progress: a progress bar on stderr; None (default): only where someone watches (a terminal or Jupyter).

    Returns:
        A :class:`PredictionSummary`.

    Raises:
        VideoError: no frame could be read. Errors of the predictor, the observer and the sinks propagate,
            after every sink was aborted.
    """
    from tqdm.auto import tqdm

    if observer is not None and source.fps is None:
        logger.warning("tracking needs a video or a stream; ignored for %s input", source.kind)
        observer = None
    draw = any(sink.needs_image for sink in sinks)
    if annotator is None and draw:
        from maskdetect.infer.annotate import FrameAnnotator

        annotator = FrameAnnotator(predictor.class_names)
    summary = PredictionSummary(kind=source.kind)
    for sink in sinks:
        if sink.path is not None and summary.out_path is None and sink.needs_image:
            summary.out_path = sink.path
        elif sink.path is not None and not sink.needs_image:
            summary.json_path = sink.path
    unit = "image" if source.fps is None else "frame"
    bar = tqdm(total=source.total, desc="stream" if source.live else "predict", unit=unit, dynamic_ncols=True,
               disable=not progress_wanted(progress) or source.total == 1)
    stages = _StageTimes()
    started = time.perf_counter()
    with contextlib.ExitStack() as held:
        try:
            stopping = held.enter_context(stop_signals_as_interrupt())
            held.enter_context(output_lock(_written_paths(source, sinks, observer)))
        except BaseException:
            source.close()
            bar.close()
            raise
        try:
            try:
                if observer is not None:
                    observer.start(source.info, list(predictor.class_names),
                                   [sink.path for sink in sinks if sink.path is not None])
                for frame in source:
                    detections = predictor.predict(frame.image)
                    stages.add(predictor)
                    banner = None
                    if observer is not None:
                        detections = observer.update(detections, summary.frames, frame.time_s, frame=frame.image)
                        banner = observer.banner(summary.frames)
                    records = detections.to_records(predictor.class_names, **frame.tag)
                    summary.detections += len(detections)
                    summary.frames += 1
                    bar.update(1)
                    if show_fps:
                        rate = f"{summary.frames / max(time.perf_counter() - started, 1e-6):.1f} FPS"
                        banner = f"{rate} | {banner}" if banner else rate
                    annotated = annotator.annotate(frame.image, detections, banner=banner) if draw else None
                    if not all([sink.write(FrameResult(frame, detections, records, annotated)) for sink in sinks]):
                        break
                    if max_frames is not None and summary.frames >= max_frames:
                        break
                    if duration_s is not None and time.perf_counter() - started >= duration_s:
                        break
            except KeyboardInterrupt:
                if not source.live:
                    raise
                summary.interrupted = True
                logger.info("interrupted: finishing the outputs")
            stopping.stopping = True  # from here on a stop signal must not cut the outputs short
            source.close()
            summary.seconds = time.perf_counter() - started
            bar.close()  # before the sinks' and the observer's lines
            if summary.frames == 0 and not summary.interrupted:
                raise VideoError(f"no frame could be read from {source.location}")
            for sink in sinks:
                sink.close()
            checked = getattr(source, "input_check", None)
            summary.input = checked.to_dict() if checked is not None else None
            if observer is not None:
                summary.monitor = observer.close(source_frames=summary.input)
        except BaseException:
            for sink in sinks:
                sink.abort()
            if observer is not None:
                observer.abort()
            raise
        finally:
            source.close()
            bar.close()
    summary.frames_dropped = source.frames_dropped
    summary.speed = stages.medians()
    logger.debug("%s: %d %ss, %d detection(s), %.1f/s end to end%s%s", source.location, summary.frames, unit,
                 summary.detections, summary.fps,
                 f" ({summary.frames_dropped} dropped as stale)" if source.live else "",
                 " (stopped)" if summary.interrupted else "")
    return summary


def _load_predictor(predictor: "Predictor | str | Path | Callable[[], Predictor]") -> "Predictor":
    if hasattr(predictor, "predict"):
        return predictor  # type: ignore[return-value]
    if isinstance(predictor, (str, Path)):
        from maskdetect.infer.predictor import Predictor

        return Predictor(predictor)
    return predictor()  # type: ignore[operator]


def predict_source(predictor: "Predictor | str | Path | Callable[[], Predictor]",
                   source: Source | str | Path | int | Sequence[np.ndarray], out: str | Path | None = None, *,
                   json_path: str | Path | None = None, monitor: FrameObserver | None = None,
                   max_frames: int | None = None, duration_s: float | None = None, live: bool = False,
                   display: str | bool = "auto", record_fps: float | str | Fraction | None = None,
                   keep_audio: bool = True, encoder: Encoder | None = None, ffmpeg_threads: int = 0,
                   pace: bool | None = None, capture_factory: Callable[[Any], Any] | None = None,
                   annotator: Any = None, show_fps: bool = False, strict: bool = False,
                   progress: bool | None = None,
                   inputs: Mapping[str, str | Path | None] | None = None) -> PredictionSummary:
    """Detect in any source: an image, a folder of images, a glob of images, images in memory, a video file, a
    webcam index, a stream URL, or an opened :class:`~maskdetect.infer.sources.Source` (e.g. the Colab camera).
    What ``maskdetect predict``, the notebooks and the Colab camera run.

    Every output (the annotated file, the JSON, the monitor's files) is checked once, against the source,
    `inputs` and each other, before the model loads (when `predictor` is a path or a factory) and before any
    frame is read.

    Args:
        predictor: a loaded :class:`~maskdetect.infer.predictor.Predictor`, an export path, or a callable that
            loads one (called after the checks).
        source: see :func:`~maskdetect.infer.sources.open_source` (`live`, `pace`, `capture_factory`,
            `ffmpeg_threads` go there).
        out: annotated image(s) (a folder, or an image path for one image), video, or live recording; a path
            ending in ``/`` (or an existing folder) is a folder (a video goes in it as ``<source stem>.mp4``).
        json_path: detections as JSON records.
        monitor: a :class:`FrameObserver` (:class:`~maskdetect.monitor.monitor.Monitor`).
        max_frames, duration_s: stop after this many frames / seconds.
        display, record_fps, keep_audio, encoder: see :func:`~maskdetect.infer.sinks.open_sinks`.
        annotator, show_fps, progress: see :func:`run_loop`.
        strict: a video file that ends before the frames it declares (or is corrupt) is a VideoError and
            nothing is written, instead of a warning (see :class:`~maskdetect.infer.sources.VideoFile`).
        inputs: more files the run reads that no output may be (``{"--model": path, ...}``).

    Raises:
        OutputError: an output would overwrite an input or another output (nothing was read or written).
    """
    source = open_source(source, live=live, max_frames=max_frames, pace=pace, capture_factory=capture_factory,
                         ffmpeg_threads=ffmpeg_threads, strict=strict)
    with contextlib.ExitStack() as held:
        try:
            out = output_path(source, out)
            check_outputs(source, out, json_path, inputs=inputs, observer=monitor)
            written = [Path(p) for p in (out, json_path) if p is not None]
            if monitor is not None and source.fps is not None:
                written += list(monitor.planned_outputs(source.info, written).values())
            held.enter_context(output_lock(written))  # before the model loads; run_loop holds it again
            predictor = _load_predictor(predictor)
            sinks = open_sinks(source, out, json_path, display=display, record_fps=record_fps,
                               keep_audio=keep_audio, encoder=encoder, ffmpeg_threads=ffmpeg_threads)
        except BaseException:
            source.close()
            raise
        return run_loop(predictor, source, sinks, observer=monitor, annotator=annotator, max_frames=max_frames,
                        duration_s=duration_s, show_fps=show_fps, progress=progress)


__all__ = ["FrameObserver", "PredictionSummary", "SourceInfo", "run_loop", "predict_source", "progress_wanted",
           "stop_signals_as_interrupt"]
