"""Monitoring facade for the video pipeline: tracking, counting, compliance alerts, hooks and the review queue.

The frame loop (:func:`maskdetect.infer.loop.run_loop`) introduces the source with :meth:`Monitor.start` (its
real frame rate, name and kind, and the files the run writes), then calls, per frame, :meth:`Monitor.update`
(after detection, before drawing) and :meth:`Monitor.banner` (text to draw, or None), and :meth:`Monitor.close`
once at the end. Everything a user chooses is in one :class:`MonitorSettings`; the CLI builds it from its options
(``maskdetect/cli/predict.py``).

Every file the monitor writes appears only complete: the events are streamed to a temporary file that is renamed
to ``<stem>.events.jsonl`` at the end (an interrupted or failed run leaves the previous run's log as it was), the
summary and the plot are written under a temporary name and renamed, and review items never replace a file.

Example:
    >>> import tempfile, maskdetect
    >>> from maskdetect.infer.sources import SourceInfo
    >>> out = Path(tempfile.mkdtemp()) / "clip.mp4"
    >>> monitor = Monitor(MonitorSettings(alert_seconds=0.2, alert_cooldown_s=0))
    >>> monitor.start(SourceInfo("clip", "video", "clip.mp4", fps=10), maskdetect.CLASSES, [out])
    >>> box = Detections(xyxy=[[10, 10, 50, 50]], confidence=[0.9], class_id=[1])
    >>> tracked = [monitor.update(box, i, i / 10) for i in range(4)]
    >>> monitor.banner(3)
    'ALERT: mask compliance below 75% since 0.0 s (now 0%)'
    >>> monitor.close()["alerts"]["raised"]
    1
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from maskdetect.monitor.compliance import AlertRule, AlertSettings, PeopleCounter
from maskdetect.detections import Detections
from maskdetect.errors import ConfigError
from maskdetect.fileio import atomic_path, atomic_write_json, make_partial
from maskdetect.monitor.hooks import Hook, HookRunner
from maskdetect.monitor.review import ReviewQueue
from maskdetect.monitor.track import SMOOTHED_CLASS_KEY, SmoothingMethod, Tracker, TrackerSettings

logger = logging.getLogger(__name__)

_BANNER_MEMORY = 512  # frames whose banner text is kept for banner(frame_index)
#: Where the summary goes when the run writes no file of its own (a camera shown live, ``--show --track``).
DEFAULT_SUMMARY_DIR = Path("maskdetect-monitor")


def output_paths(out_path: str | Path) -> dict[str, Path]:
    """Files the monitor writes beside the annotated output ``<dir>/<stem>.<ext>``.

    Example:
        >>> sorted(output_paths("runs/clip.mp4"))
        ['events', 'plot', 'summary']
    """
    out_path = Path(out_path)
    return {"summary": out_path.with_name(f"{out_path.stem}.summary.json"),
            "plot": out_path.with_name(f"{out_path.stem}.compliance.png"),
            "events": out_path.with_name(f"{out_path.stem}.events.jsonl")}


@dataclass(frozen=True)
class MonitorSettings:
    """Everything a user chooses about monitoring (the frame rate, the source's name and where the files go
    come from the loop, :meth:`Monitor.start`).

    Attributes:
        track: Track faces (ids, smoothed classes, unique counts). Off: per-frame compliance on raw classes.
        smoothing_window: Frames per track that vote for its class.
        smoothing: ``"majority"`` (one vote per frame) or ``"score"`` (votes weighted by confidence).
        count_window_s: Length of the per-window counts in the summary.
        min_track_frames: Tracks seen in fewer frames are flicker and are not counted.
        alert_threshold: Raise when the with-mask fraction stays below this ...
        alert_seconds: ... for at least this many seconds.
        alert_margin: Clear only at ``alert_threshold + alert_margin`` or above, held for `alert_seconds`.
        alert_cooldown_s: Minimum seconds between two raises.
        events_path: JSON-lines file of the alert events; None: ``<stem>.events.jsonl`` beside the run's first
            output.
        review_dir: Save frames worth reviewing here (Pascal VOC); None: no review queue.
        review_low: Confidence band ``[review_low, review_high)`` that marks a box as uncertain.
        review_high: See `review_low`.
        review_every_n_frames: Per reason, at most one saved frame per this many frames.
        review_max_frames: At most this many saved frames.
        summary_dir: Where the summary, plot and events go when the run writes no output file
            (``<summary_dir>/<source name>-<date>-<time>.summary.json``).
        tracker: ByteTrack parameters (None: :class:`~maskdetect.monitor.track.TrackerSettings`' defaults).
        hook_wait_s: How long :meth:`Monitor.close` waits for queued hooks.
        snapshot_blur_faces: Pixelate the faces in the alert's snapshot sent to hooks (a run that asks for privacy).
    """

    track: bool = True
    smoothing_window: int = 15
    smoothing: SmoothingMethod = "majority"
    count_window_s: float = 10.0
    min_track_frames: int = 5
    alert_threshold: float = 0.75
    alert_seconds: float = 3.0
    alert_margin: float = 0.10
    alert_cooldown_s: float = 30.0
    events_path: Path | None = None
    review_dir: Path | None = None
    review_low: float = 0.3
    review_high: float = 0.6
    review_every_n_frames: int = 30
    review_max_frames: int = 200
    summary_dir: Path = DEFAULT_SUMMARY_DIR
    tracker: TrackerSettings | None = None
    hook_wait_s: float = 30.0
    snapshot_blur_faces: bool = False


class Monitor:
    """Tracks faces, counts people, raises compliance alerts and queues frames for review.

    Args:
        settings: What to do (:class:`MonitorSettings`; default: tracking and compliance alerts).
        hooks: Called (each in the background) with every event's JSON.

    Attributes (after :meth:`start`):
        source: the source's name; fps: its real frame rate; paths: ``{"summary", "plot", "events"}`` files.
    """

    def __init__(self, settings: MonitorSettings | None = None, *, hooks: Sequence[Hook] = ()) -> None:
        self.settings = settings = settings or MonitorSettings()
        if not 0.0 <= settings.alert_threshold <= 1.0:
            raise ConfigError(f"alert_threshold={settings.alert_threshold}: must be in [0, 1]")
        self.hooks = HookRunner(hooks)
        self.events: list[dict[str, Any]] = []
        self.class_names: list[str] = []
        self.source: str | None = None
        self.fps = 0.0
        self.tracker: Tracker | None = None
        self.counter: PeopleCounter | None = None
        self.rule = AlertRule(AlertSettings(threshold=settings.alert_threshold, seconds=settings.alert_seconds,
                                            margin=settings.alert_margin, cooldown_s=settings.alert_cooldown_s))
        self.review: ReviewQueue | None = None
        self.paths: dict[str, Path] = {}
        self._created = time.strftime("%Y%m%d-%H%M%S")
        self._events_tmp: Path | None = None
        self._events_file: IO[str] | None = None
        self._banners: OrderedDict[int, str | None] = OrderedDict()
        self._last_compliance: float | None = None
        self._alert_since_s = 0.0
        self._summary: dict[str, Any] | None = None

    @property
    def events_path(self) -> Path | None:
        return self.paths.get("events")

    # -- start ------------------------------------------------------------------------------------------------
    def planned_outputs(self, source: Any, outputs: Sequence[Path]) -> dict[str, Path]:
        """What :meth:`start` with these arguments writes: ``{"the summary file": path, ...}`` (the names are
        those a refusal of :func:`maskdetect.guard.check_paths` shows)."""
        paths = self._paths(source, outputs)
        named = {f"the monitor's {name} file": path for name, path in paths.items() if name != "events"}
        named["--events" if self.settings.events_path is not None else "the monitor's events file"] = paths["events"]
        if self.settings.review_dir is not None:
            named["--review-dir"] = Path(self.settings.review_dir)
        return named

    def _paths(self, source: Any, outputs: Sequence[Path]) -> dict[str, Path]:
        if outputs:
            anchor = Path(outputs[0])
        else:
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name) or "source"
            anchor = Path(self.settings.summary_dir) / f"{name}-{self._created}"
        paths = output_paths(anchor)
        if self.settings.events_path is not None:
            paths["events"] = Path(self.settings.events_path)
        return paths

    def start(self, source: Any, class_names: Sequence[str], outputs: Sequence[Path] = ()) -> None:
        """Begin a run on `source` (a :class:`~maskdetect.infer.sources.SourceInfo`: its real frame rate and its
        name), with the model's `class_names` (index 0 is "masked correctly"). The summary, plot and events go
        beside the first of `outputs`, or into :attr:`MonitorSettings.summary_dir` when there is none (logged).
        """
        if self.counter is not None:
            raise RuntimeError("Monitor.start() called twice: use one Monitor per run")
        if source.fps is None or not float(source.fps) > 0:
            raise ConfigError(f"{source.location}: monitoring needs a frame rate (a video or a live source)")
        s = self.settings
        self.class_names = list(class_names)
        self.fps = float(source.fps)
        self.source = source.name
        self.tracker = (Tracker(self.fps, smoothing_window=s.smoothing_window, smoothing=s.smoothing,
                                settings=s.tracker) if s.track else None)
        self.counter = PeopleCounter(len(self.class_names), window_s=s.count_window_s,
                                     min_track_frames=s.min_track_frames)
        self.review = (ReviewQueue(s.review_dir, self.class_names, prefix=source.name or "frame", low=s.review_low,
                                   high=s.review_high, every_n_frames=s.review_every_n_frames,
                                   max_frames=s.review_max_frames) if s.review_dir is not None else None)
        self.paths = self._paths(source, outputs)
        if not outputs:
            logger.warning("monitor: the run writes no file; the summary goes to %s", self.paths["summary"])
        self._events_tmp = make_partial(self.paths["events"], suffix=".jsonl")
        self._events_file = open(self._events_tmp, "w", encoding="utf-8")

    # -- per frame --------------------------------------------------------------------------------------------
    def update(self, detections: Detections, frame_index: int, timestamp_s: float | None = None,
               frame: np.ndarray | None = None) -> Detections:
        """Process one frame's detections.

        Args:
            detections: Boxes after thresholding/NMS.
            frame_index: 0-based index of the frame in the video; frames come in increasing order.
            timestamp_s: Time of the frame (None: ``frame_index / fps``).
            frame: The RGB frame (``H, W, 3`` uint8); needed to save review frames and the alert's snapshot.

        Returns:
            The same boxes, in order, with ``tracker_id`` (1-based, -1 for a face not yet confirmed; None when
            tracking is off) and ``data["smoothed_class_id"]``.
        """
        if self._summary is not None:
            raise RuntimeError("Monitor.update() called after close()")
        if self.counter is None:
            raise RuntimeError("Monitor.update() called before start(): the loop introduces the source first")
        timestamp_s = frame_index / self.fps if timestamp_s is None else float(timestamp_s)
        changed: set[int] = set()
        if self.tracker is not None:
            detections = self.tracker.update(detections, timestamp_s)
            changed = self.tracker.changed_track_ids
        else:
            detections = Detections(xyxy=detections.xyxy, confidence=detections.confidence,
                                    class_id=detections.class_id, tracker_id=detections.tracker_id,
                                    data={**detections.data, SMOOTHED_CLASS_KEY: detections.class_id.copy()},
                                    class_names=detections.class_names)
        stat = self.counter.update(frame_index, timestamp_s, detections.data[SMOOTHED_CLASS_KEY],
                                   detections.tracker_id if self.tracker is not None else None)
        if stat.fraction is not None:
            self._last_compliance = stat.fraction
        event = self.rule.update(frame_index, timestamp_s, stat.fraction, sum(stat.people_per_class))
        if event is not None:
            if event.event == "alert_raised":
                self._alert_since_s = event.run_start_s
            snapshot = (self.hooks.snapshot(frame, detections.xyxy, blur_faces=self.settings.snapshot_blur_faces)
                        if event.event == "alert_raised" else None)
            self._emit(event.to_json(), snapshot)
        if self.review is not None:
            self.review.consider(frame_index, frame, detections, changed)
        self._banners[frame_index] = self._banner_text()
        while len(self._banners) > _BANNER_MEMORY:
            self._banners.popitem(last=False)
        return detections

    def banner(self, frame_index: int) -> str | None:
        """Alert text to draw on `frame_index` (None when no alert is active then, or the frame is unknown)."""
        return self._banners.get(frame_index)

    @property
    def alert_active(self) -> bool:
        return self.rule.active

    def _banner_text(self) -> str | None:
        if not self.rule.active:
            return None
        return (f"ALERT: mask compliance below {100 * self.rule.settings.threshold:.0f}% since "
                f"{self._alert_since_s:.1f} s (now {100 * (self._last_compliance or 0.0):.0f}%)")

    def _emit(self, event: dict[str, Any], snapshot_jpeg: bytes | None = None) -> None:
        if self.source:
            event = {**event, "source": self.source}
        self.events.append(event)
        if self._events_file is not None:
            self._events_file.write(json.dumps(event) + "\n")
            self._events_file.flush()
        self.hooks.submit(event, snapshot_jpeg=snapshot_jpeg)

    # -- end of video -----------------------------------------------------------------------------------------
    def abort(self) -> None:
        """The run failed: delete the events written so far (the previous run's log, if any, is untouched)."""
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None
        if self._events_tmp is not None:
            self._events_tmp.unlink(missing_ok=True)
            self._events_tmp = None

    def close(self, *, source_frames: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish: wait for hooks (at most `hook_wait_s`), rename the events to their file, write
        ``<stem>.summary.json`` and ``<stem>.compliance.png``, and return the summary. Calling it again returns
        the same summary. `source_frames` (frames read vs declared by a video file) goes to ``"input"``."""
        if self._summary is not None:
            return self._summary
        if self.counter is None:
            raise RuntimeError("Monitor.close() called before start()")
        paths = self.paths
        hook_stats = self.hooks.close(self.settings.hook_wait_s)
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None
            os.replace(self._events_tmp, paths["events"])
        summary = self._build_summary(hook_stats)
        summary["input"] = source_frames
        summary["outputs"] = {name: str(path) for name, path in paths.items()}
        try:
            _plot_compliance(paths["plot"], self.counter, summary["alerts"]["periods"], self.rule.settings,
                             title=self.source or paths["summary"].name)
        except Exception as exc:  # a plot must never lose the summary
            logger.warning("could not write the compliance plot %s: %s", paths["plot"], exc)
            summary["outputs"]["plot"] = None
        atomic_write_json(paths["summary"], summary)
        logger.info("monitor: %s people counted, %d alert(s); summary %s", summary["people"]["total"],
                    summary["alerts"]["raised"], paths["summary"])
        self._summary = summary
        return summary

    def _build_summary(self, hook_stats: dict[str, int]) -> dict[str, Any]:
        frames = self.counter.frames
        tracked = self.tracker is not None
        totals = self.counter.totals() if tracked else None
        fractions = [f.fraction for f in frames if f.fraction is not None]
        s = self.rule.settings
        return {
            "source": self.source,
            "fps": self.fps,
            "frames": len(frames),
            "duration_s": round(frames[-1].timestamp_s - frames[0].timestamp_s + 1 / self.fps, 4) if frames else 0.0,
            "classes": self.class_names,
            "tracking": tracked,
            "min_track_frames": self.counter.min_track_frames,
            "people": ({**{name: n for name, n in zip(self.class_names, totals)}, "total": sum(totals)}
                       if totals is not None else {"total": None}),
            "tracks": [{"track_id": r.track_id, "class": self.class_names[r.final_class], "frames": r.frames,
                        "first_frame": r.first_frame, "last_frame": r.last_frame,
                        "first_s": round(r.first_s, 4), "last_s": round(r.last_s, 4)}
                       for r in self.counter.counted_tracks()] if tracked else [],
            "windows": [{**w, "people": ({n: c for n, c in zip(self.class_names, w["people"])} if tracked else None),
                         "mean_compliance": None if w["mean_compliance"] is None else round(w["mean_compliance"], 4)}
                        for w in self.counter.windows()],
            "compliance": {"mean": round(float(np.mean(fractions)), 4) if fractions else None,
                           "frames_with_people": len(fractions), "per_second": self.counter.per_second()},
            "alerts": {"threshold": s.threshold, "seconds": s.seconds, "margin": s.margin,
                       "cooldown_s": s.cooldown_s, "max_gap_s": s.max_gap_s,
                       "raised": sum(e["event"] == "alert_raised" for e in self.events),
                       "periods": self._alert_periods(), "hooks": hook_stats},
            "review": self.review.summary() if self.review is not None else None,
        }

    def _alert_periods(self) -> list[dict[str, Any]]:
        periods: list[dict[str, Any]] = []
        for event in self.events:
            if event["event"] == "alert_raised":
                periods.append({"alert_id": event["alert_id"], "start_frame": event["frame_index"],
                                "start_s": event["timestamp_s"], "end_frame": None, "end_s": None, "cleared": False})
            elif periods:
                periods[-1].update(end_frame=event["frame_index"], end_s=event["timestamp_s"], cleared=True)
        if periods and not periods[-1]["cleared"] and self.counter.frames:
            last = self.counter.frames[-1]
            periods[-1].update(end_frame=last.frame_index, end_s=round(last.timestamp_s, 4))
        return periods


def _plot_compliance(path: Path, counter: PeopleCounter, periods: list[dict[str, Any]], settings: AlertSettings,
                     *, title: str) -> None:
    """Compliance per frame and per second, the threshold, people in view, and alert periods shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = np.array([f.timestamp_s for f in counter.frames], float)
    fraction = np.array([np.nan if f.fraction is None else f.fraction for f in counter.frames], float)
    in_view = np.array([sum(f.people_per_class) for f in counter.frames], float)
    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    people_ax = ax.twinx()
    people_ax.fill_between(times, in_view, step="post", color="0.85", label="people in view")
    people_ax.set_ylabel("people in view")
    people_ax.set_ylim(0, max(1.0, float(in_view.max()) if len(in_view) else 1.0) * 1.5)
    ax.set_zorder(people_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    for i, period in enumerate(periods):
        ax.axvspan(period["start_s"], period["end_s"], color="tab:red", alpha=0.2,
                   label="alert" if i == 0 else None)
    ax.plot(times, fraction, color="tab:blue", lw=0.8, alpha=0.6, label="per frame")
    seconds = counter.per_second()
    if seconds:
        ax.step([s["second"] for s in seconds] + [seconds[-1]["second"] + 1],
                [np.nan if s["compliance"] is None else s["compliance"] for s in seconds] + [np.nan],
                where="post", color="tab:blue", lw=2, label="per second")
    ax.axhline(settings.threshold, color="tab:red", ls="--", lw=1, label=f"threshold {settings.threshold:.0%}")
    if settings.margin:
        ax.axhline(settings.threshold + settings.margin, color="tab:red", ls=":", lw=1, label="clear level")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(float(times.max()) + 1 if len(times) else 1.0, 1.0))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("fraction wearing masks correctly")
    ax.set_title(f"Mask compliance: {title}")
    ax.legend(loc="lower left", fontsize="small", ncols=3)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
