"""The frame loop: the one place where a frame is detected, observed, recorded, drawn and written.

Per frame, :func:`run_loop` does: ``predictor.predict`` -> ``observer.update`` (tracking, counting, alerts) ->
``observer.banner`` -> JSON records -> ``annotate`` (only if a sink shows or writes images) -> every sink's
``write``. At the end it closes the sinks (the video is finalised, the JSON written) and the observer (its
summary beside the first output). On an error, or on Ctrl-C in a file source, every sink and the observer are
aborted and nothing is left behind; Ctrl-C in a live source ends it cleanly (the recording is kept).

:func:`predict_source` is what ``maskdetect predict``, the notebooks and the Colab camera run:
``run_loop(predictor, open_source(...), open_sinks(...))``.

Example:
    >>> predictor = Predictor("workspace/runs/demo/export/saved_model")              # doctest: +SKIP
    >>> summary = predict_source(predictor, "in.mp4", "out.mp4", json_path="out.json")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError, VideoError
from maskdetect.infer.sinks import FrameResult, Sink, open_sinks
from maskdetect.infer.sources import Source, open_source

if TYPE_CHECKING:
    from maskdetect.infer.predictor import Predictor

logger = logging.getLogger(__name__)


@runtime_checkable
class FrameObserver(Protocol):
    """Sees every frame's detections in order, before drawing (:class:`maskdetect.monitor.monitor.Monitor`)."""

    def update(self, detections: Detections, frame_index: int, timestamp_s: float | None = None,
               frame: np.ndarray | None = None) -> Detections:
        """The detections of frame `frame_index` (0-based, increasing), possibly changed (track ids, ...)."""

    def banner(self, frame_index: int) -> str | None:
        """Text to draw on that frame (an active alert), or None."""

    def close(self, out_path: str | Path, *, source_frames: dict[str, Any] | None = None) -> Any:
        """Finish after the last frame; write what it writes beside `out_path`; return its summary.
        `source_frames`: video files, frames read vs declared (None for other sources)."""

    def abort(self) -> None:
        """The run failed: delete whatever it already wrote (the loop aborts the sinks alike)."""


@dataclass
class PredictionSummary:
    """What a run of the loop did.

    Attributes:
        kind: source kind (``image``, ``folder``, ``images``, ``video``, ``webcam``, ``stream``, ``camera``).
        frames: images or frames processed.
        detections: boxes kept in total.
        seconds: wall time; fps: frames per second end to end.
        out_path / json_path: where the annotated output and the records went (None if not written).
        records: the JSON records (also written to `json_path`).
        frames_dropped: live sources only: frames skipped because newer ones had arrived.
        interrupted: a live source was stopped by Ctrl-C (its outputs are complete).
        monitor: what the observer's ``close`` returned (the monitor's summary), if there was one.
        input: video files: frames read vs declared (:meth:`maskdetect.infer.video.InputCheck.to_dict`; also
            the ``"input"`` of the monitor's summary).
    """

    kind: str
    frames: int = 0
    detections: int = 0
    seconds: float = 0.0
    out_path: Path | None = None
    json_path: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    frames_dropped: int = 0
    interrupted: bool = False
    monitor: Any = field(default=None, repr=False)
    input: dict[str, Any] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run_loop(predictor: "Predictor", source: Source, sinks: Sequence[Sink] = (), *,
             observer: FrameObserver | None = None, annotator: Any = None, max_frames: int | None = None,
             duration_s: float | None = None, show_fps: bool = False, progress: bool = True) -> PredictionSummary:
    """Detect in every frame of `source` and hand the results to `sinks` (see the module docstring).

    Args:
        predictor: anything with ``predict(rgb) -> Detections`` and ``class_names``.
        source: frames (:func:`maskdetect.infer.sources.open_source`); closed at the end.
        sinks: outputs (:func:`maskdetect.infer.sinks.open_sinks`).
        observer: tracker / alerter; needs a sink with a path (its summary goes beside the first one). Ignored,
            with a warning, for still images.
        annotator: draws the frames (default :class:`maskdetect.infer.annotate.FrameAnnotator`).
        max_frames: stop after this many frames; duration_s: after this many seconds.
        show_fps: draw the frames per second beside the observer's banner.

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
    paths = [sink.path for sink in sinks if sink.path is not None]
    if observer is not None and not paths:
        source.close()
        raise ConfigError("monitoring needs an output (out and/or json_path): its summary is written beside it")
    if annotator is None and any(sink.needs_image for sink in sinks):
        from maskdetect.infer.annotate import FrameAnnotator

        annotator = FrameAnnotator(predictor.class_names)
    draw = any(sink.needs_image for sink in sinks)
    summary = PredictionSummary(kind=source.kind)
    for sink in sinks:
        if sink.path is not None and summary.out_path is None and sink.needs_image:
            summary.out_path = sink.path
        elif sink.path is not None and not sink.needs_image:
            summary.json_path = sink.path
    unit = "image" if source.fps is None else "frame"
    bar = tqdm(total=source.total, desc="stream" if source.live else "predict", unit=unit, dynamic_ncols=True,
               disable=not progress or source.total == 1)
    started = time.perf_counter()
    try:
        try:
            for frame in source:
                detections = predictor.predict(frame.image)
                banner = None
                if observer is not None:
                    detections = observer.update(detections, summary.frames, frame.time_s, frame=frame.image)
                    banner = observer.banner(summary.frames)
                records = detections.to_records(predictor.class_names, **frame.tag)
                summary.records += records
                summary.detections += len(detections)
                summary.frames += 1
                bar.update(1)
                if show_fps:
                    rate = f"{summary.frames / max(time.perf_counter() - started, 1e-6):.1f} FPS"
                    banner = f"{rate} | {banner}" if banner else rate
                annotated = annotator.annotate(frame.image, detections, banner=banner) if draw else None
                result = FrameResult(frame, detections, records, annotated)
                if not all([sink.write(result) for sink in sinks]):
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
        source.close()
        summary.seconds = time.perf_counter() - started
        if summary.frames == 0 and not summary.interrupted:
            raise VideoError(f"no frame could be read from {source.location}")
        for sink in sinks:
            sink.close()
        checked = getattr(source, "input_check", None)
        summary.input = checked.to_dict() if checked is not None else None
        if observer is not None:
            summary.monitor = observer.close(paths[0], source_frames=summary.input)
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
    logger.info("%s: %d %ss, %d detection(s), %.1f/s end to end%s%s", source.location, summary.frames, unit,
                summary.detections, summary.fps,
                f" ({summary.frames_dropped} dropped as stale)" if source.live else "",
                " (stopped by Ctrl-C)" if summary.interrupted else "")
    return summary


def predict_source(predictor: "Predictor | str | Path", source: Source | str | Path | int | Sequence[np.ndarray],
                   out: str | Path | None = None, *, json_path: str | Path | None = None,
                   monitor: FrameObserver | None = None, max_frames: int | None = None,
                   duration_s: float | None = None, live: bool = False, display: str | bool = "auto",
                   record_fps: float | str | Fraction | None = None, keep_audio: bool = True, crf: int = 23,
                   preset: str = "ultrafast", ffmpeg_threads: int = 0, pace: bool | None = None,
                   capture_factory: Callable[[Any], Any] | None = None, annotator: Any = None,
                   show_fps: bool = False, strict: bool = False, progress: bool = True) -> PredictionSummary:
    """Detect in any source: an image, a folder of images, images in memory, a video file, a webcam index, a
    stream URL, or an opened :class:`~maskdetect.infer.sources.Source` (e.g. the Colab camera). What
    ``maskdetect predict``, the notebooks and the Colab camera run.

    Args:
        predictor: a loaded :class:`~maskdetect.infer.predictor.Predictor` or an export path.
        source: see :func:`~maskdetect.infer.sources.open_source` (`live`, `pace`, `capture_factory`,
            `ffmpeg_threads` go there).
        out: annotated image(s) (a folder, or an image path for one image), video, or live recording.
        json_path: detections as JSON records.
        monitor: a :class:`FrameObserver` (:class:`~maskdetect.monitor.monitor.Monitor`).
        max_frames, duration_s: stop after this many frames / seconds.
        display, record_fps, keep_audio, crf, preset: see :func:`~maskdetect.infer.sinks.open_sinks`.
        annotator, show_fps, progress: see :func:`run_loop`.
        strict: a video file that ends before the frames it declares (or is corrupt) is a VideoError and
            nothing is written, instead of a warning (see :class:`~maskdetect.infer.sources.VideoFile`).
    """
    if isinstance(predictor, (str, Path)):
        from maskdetect.infer.predictor import Predictor

        predictor = Predictor(predictor)
    source = open_source(source, live=live, max_frames=max_frames, pace=pace, capture_factory=capture_factory,
                         ffmpeg_threads=ffmpeg_threads, strict=strict)
    try:
        sinks = open_sinks(source, out, json_path, display=display, record_fps=record_fps, keep_audio=keep_audio,
                           crf=crf, preset=preset, ffmpeg_threads=ffmpeg_threads)
    except BaseException:
        source.close()
        raise
    return run_loop(predictor, source, sinks, observer=monitor, annotator=annotator, max_frames=max_frames,
                    duration_s=duration_s, show_fps=show_fps, progress=progress)


__all__ = ["FrameObserver", "PredictionSummary", "run_loop", "predict_source"]
