"""Monitoring facade for the video pipeline: tracking, counting, compliance alerts, hooks and the review queue.

The video loop calls, per frame, :meth:`Monitor.update` (after detection, before drawing) and
:meth:`Monitor.banner` (text to draw, or None), and :meth:`Monitor.close` once at the end. The CLI builds the
monitor with :func:`add_monitor_arguments` and :func:`monitor_from_args`.

Example:
    >>> import tempfile, maskdetect
    >>> out = Path(tempfile.mkdtemp()) / "clip.mp4"
    >>> monitor = Monitor(maskdetect.CLASSES, fps=10, alert_seconds=0.2, alert_cooldown_s=0)
    >>> box = Detections(xyxy=[[10, 10, 50, 50]], confidence=[0.9], class_id=[1])
    >>> tracked = [monitor.update(box, i, i / 10) for i in range(4)]
    >>> monitor.banner(3)
    'ALERT: mask compliance below 75% since 0.0 s (now 0%)'
    >>> monitor.close(out)["alerts"]["raised"]
    1
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from maskdetect.monitor.compliance import AlertRule, AlertSettings, PeopleCounter
from maskdetect.detections import Detections
from maskdetect.errors import ConfigError
from maskdetect.fileio import atomic_path, atomic_write_json
from maskdetect.monitor.hooks import SMTP_ENV, WEBHOOK_SHAPES, CommandHook, EmailHook, Hook, HookRunner, UrlHook
from maskdetect.monitor.review import ReviewQueue
from maskdetect.monitor.track import SMOOTHED_CLASS_KEY, SmoothingMethod, Tracker, TrackerSettings

logger = logging.getLogger(__name__)

_BANNER_MEMORY = 512  # frames whose banner text is kept for banner(frame_index)


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


class Monitor:
    """Tracks faces, counts people, raises compliance alerts and queues frames for review.

    Args:
        class_names: Class names by 0-based index (``maskdetect.CLASSES``); index 0 is "masked correctly".
        fps: Video frame rate (for timestamps when none are given, and the tracker's lost-track buffer).
        track: Track faces (ids, smoothed classes, unique counts). Off: per-frame compliance on raw classes.
        smoothing_window: Frames per track that vote for its class.
        smoothing: ``"majority"`` (one vote per frame) or ``"score"`` (votes weighted by confidence).
        count_window_s: Length of the per-window counts in the summary.
        min_track_frames: Tracks seen in fewer frames are flicker and are not counted.
        alert_threshold: Raise when the with-mask fraction stays below this ...
        alert_seconds: ... for at least this many seconds.
        alert_margin: Clear only at ``alert_threshold + alert_margin`` or above, held for `alert_seconds`.
        alert_cooldown_s: Minimum seconds between two raises.
        events_path: JSON-lines file for alert events (written as they happen); None: no file.
        hooks: Called (in a background thread) with every event's JSON.
        review_dir: Save frames worth reviewing here (Pascal VOC); None: no review queue.
        review_low: Confidence band ``[review_low, review_high)`` that marks a box as uncertain.
        review_high: See `review_low`.
        review_every_n_frames: Per reason, at most one saved frame per this many frames.
        review_max_frames: At most this many saved frames.
        source: Name of the video (for events, summary and review file names).
        tracker_settings: ByteTrack parameters.
        hook_wait_s: How long :meth:`close` waits for queued hooks.
    """

    def __init__(self, class_names: Sequence[str], fps: float, *, track: bool = True, smoothing_window: int = 15,
                 smoothing: SmoothingMethod = "majority", count_window_s: float = 10.0, min_track_frames: int = 5,
                 alert_threshold: float = 0.75, alert_seconds: float = 3.0, alert_margin: float = 0.10,
                 alert_cooldown_s: float = 30.0, events_path: str | Path | None = None,
                 hooks: Sequence[Hook] = (), review_dir: str | Path | None = None, review_low: float = 0.3,
                 review_high: float = 0.6, review_every_n_frames: int = 30, review_max_frames: int = 200,
                 source: str | None = None, tracker_settings: TrackerSettings | None = None,
                 hook_wait_s: float = 30.0) -> None:
        if not fps > 0:
            raise ConfigError(f"fps must be positive, got {fps}")
        self.class_names = list(class_names)
        self.fps = float(fps)
        self.source = source
        self.tracker = (Tracker(fps, smoothing_window=smoothing_window, smoothing=smoothing,
                                settings=tracker_settings) if track else None)
        self.counter = PeopleCounter(len(self.class_names), window_s=count_window_s,
                                     min_track_frames=min_track_frames)
        self.rule = AlertRule(AlertSettings(threshold=alert_threshold, seconds=alert_seconds, margin=alert_margin,
                                            cooldown_s=alert_cooldown_s))
        self.review = (ReviewQueue(review_dir, self.class_names, prefix=Path(source).stem if source else "frame",
                                   low=review_low, high=review_high, every_n_frames=review_every_n_frames,
                                   max_frames=review_max_frames) if review_dir is not None else None)
        self.hooks = HookRunner(hooks)
        self.hook_wait_s = hook_wait_s
        self.events: list[dict[str, Any]] = []
        self.events_path = Path(events_path) if events_path is not None else None
        self._events_file: IO[str] | None = None
        if self.events_path is not None:
            self.events_path.parent.mkdir(parents=True, exist_ok=True)
            self._events_file = open(self.events_path, "w", encoding="utf-8")
        self._banners: OrderedDict[int, str | None] = OrderedDict()
        self._last_compliance: float | None = None
        self._alert_since_s = 0.0
        self._summary: dict[str, Any] | None = None

    # -- per frame --------------------------------------------------------------------------------------------
    def update(self, detections: Detections, frame_index: int, timestamp_s: float | None = None,
               frame: np.ndarray | None = None) -> Detections:
        """Process one frame's detections.

        Args:
            detections: Boxes after thresholding/NMS.
            frame_index: 0-based index of the frame in the video; frames come in increasing order.
            timestamp_s: Time of the frame (None: ``frame_index / fps``).
            frame: The RGB frame (``H, W, 3`` uint8); needed only to save review frames.

        Returns:
            The same boxes, in order, with ``tracker_id`` (1-based, -1 for a face not yet confirmed; None when
            tracking is off) and ``data["smoothed_class_id"]``.
        """
        if self._summary is not None:
            raise RuntimeError("Monitor.update() called after close()")
        timestamp_s = frame_index / self.fps if timestamp_s is None else float(timestamp_s)
        changed: set[int] = set()
        if self.tracker is not None:
            detections = self.tracker.update(detections, timestamp_s)
            changed = self.tracker.changed_track_ids
        else:
            detections = Detections(xyxy=detections.xyxy, confidence=detections.confidence,
                                    class_id=detections.class_id, tracker_id=detections.tracker_id,
                                    data={**detections.data, SMOOTHED_CLASS_KEY: detections.class_id.copy()})
        stat = self.counter.update(frame_index, timestamp_s, detections.data[SMOOTHED_CLASS_KEY],
                                   detections.tracker_id if self.tracker is not None else None)
        if stat.fraction is not None:
            self._last_compliance = stat.fraction
        event = self.rule.update(frame_index, timestamp_s, stat.fraction, sum(stat.people_per_class))
        if event is not None:
            if event.event == "alert_raised":
                self._alert_since_s = event.run_start_s
            self._emit(event.to_json())
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

    def _emit(self, event: dict[str, Any]) -> None:
        if self.source:
            event = {**event, "source": self.source}
        self.events.append(event)
        if self._events_file is not None:
            self._events_file.write(json.dumps(event) + "\n")
            self._events_file.flush()
        self.hooks.submit(event)

    # -- end of video -----------------------------------------------------------------------------------------
    def abort(self) -> None:
        """Close and delete the events log this monitor created (the run failed: nothing of it is kept)."""
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None
        if self.events_path is not None:
            self.events_path.unlink(missing_ok=True)

    def close(self, out_path: str | Path, *, source_frames: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish: write ``<stem>.summary.json`` and ``<stem>.compliance.png`` beside `out_path`, close the
        events file, wait for hooks (at most `hook_wait_s`), and return the summary. Calling it again returns
        the same summary. `source_frames` (frames read vs declared by a video file) goes to ``"input"``."""
        if self._summary is not None:
            return self._summary
        paths = output_paths(out_path)
        hook_stats = self.hooks.close(self.hook_wait_s)
        if self._events_file is not None:
            self._events_file.close()
        summary = self._build_summary(hook_stats)
        summary["input"] = source_frames
        summary["outputs"] = {"summary": str(paths["summary"]), "plot": str(paths["plot"]),
                              "events": str(self.events_path) if self.events_path else None}
        try:
            _plot_compliance(paths["plot"], self.counter, summary["alerts"]["periods"], self.rule.settings,
                             title=self.source or Path(out_path).name)
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


# -- CLI ------------------------------------------------------------------------------------------------------
def add_monitor_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the tracking / counting / alert / review options (an argument group) to `parser`.

    Options left out keep :class:`Monitor`'s defaults, which ``--help`` shows as read from ``Monitor.__init__``
    (so the two cannot drift apart).
    """
    import inspect

    d = {name: p.default for name, p in inspect.signature(Monitor.__init__).parameters.items()}
    group = parser.add_argument_group("tracking, counting and compliance alerts (videos)")
    add = group.add_argument
    add("--track", action="store_true", help="track faces: stable ids, smoothed classes, unique people counts")
    add("--smoothing-window", type=int, metavar="FRAMES",
        help=f"frames per track voting for its class ({d['smoothing_window']})")
    add("--smoothing", choices=("majority", "score"),
        help=f"class vote: one per frame or confidence-weighted ({d['smoothing']})")
    add("--count-window", type=float, metavar="S", dest="count_window_s",
        help=f"per-window counts length ({d['count_window_s']:g} s)")
    add("--min-track-frames", type=int, metavar="N",
        help=f"ignore tracks seen in fewer frames ({d['min_track_frames']})")
    add("--alert-threshold", type=float, metavar="T",
        help=f"alert when the fraction wearing masks correctly is below T ({d['alert_threshold']})")
    add("--alert-seconds", type=float, metavar="S", help=f"... for at least S seconds ({d['alert_seconds']:g})")
    add("--alert-margin", type=float, metavar="M", help=f"clear at T + M or above ({d['alert_margin']})")
    add("--alert-cooldown", type=float, metavar="S", dest="alert_cooldown_s",
        help=f"minimum seconds between two alerts ({d['alert_cooldown_s']:g})")
    add("--alert-command", metavar="CMD", help="run CMD (no shell) for each alert event; event JSON on stdin "
        "and in $MASKDETECT_EVENT")
    add("--alert-url", metavar="URL", help="POST each alert event to URL (as JSON, or see --alert-format)")
    add("--alert-format", choices=WEBHOOK_SHAPES, default="json",
        help="body of --alert-url: json (the event), slack / teams / discord (an incoming webhook's message), "
             "ntfy (plain text to an ntfy topic URL)")
    add("--alert-email", action="append", metavar="ADDRESS",
        help=f"e-mail each alert event to ADDRESS (repeatable) through the server in ${SMTP_ENV}")
    add("--hook-timeout", type=float, default=10.0, metavar="S", help="timeout of each hook call (10 s)")
    add("--events", type=Path, metavar="FILE", help="alert events JSON-lines file (default <out>.events.jsonl)")
    add("--review-dir", type=Path, metavar="DIR",
        help="save uncertain / class-flipping frames with Pascal VOC pre-annotations for review")
    add("--review-every", type=int, metavar="N", dest="review_every_n_frames",
        help=f"per reason, at most one review frame per N frames ({d['review_every_n_frames']})")
    add("--review-max", type=int, metavar="N", dest="review_max_frames",
        help=f"at most N review frames ({d['review_max_frames']})")
    return parser


_ENABLING = ("track", "alert_threshold", "alert_seconds", "alert_cooldown_s", "alert_command", "alert_url",
             "alert_email", "events", "review_dir")
_PASS_THROUGH = {"smoothing_window": "smoothing_window", "smoothing": "smoothing", "count_window_s": "count_window_s",
                 "min_track_frames": "min_track_frames", "alert_threshold": "alert_threshold",
                 "alert_seconds": "alert_seconds", "alert_margin": "alert_margin",
                 "alert_cooldown_s": "alert_cooldown_s", "review_every_n_frames": "review_every_n_frames",
                 "review_max_frames": "review_max_frames"}


def monitor_from_args(args: argparse.Namespace, out_path: str | Path, class_names: Sequence[str],
                      fps: float, *, source: str | None = None) -> Monitor | None:
    """The :class:`Monitor` the options ask for, or None when no monitoring option was given.

    Events go to ``--events`` or, by default, ``<out stem>.events.jsonl`` beside `out_path`.
    """
    if not any(getattr(args, name, None) not in (None, False) for name in _ENABLING):
        return None
    timeout = getattr(args, "hook_timeout", 10.0)
    hooks: list[Hook] = []
    if getattr(args, "alert_command", None):
        hooks.append(CommandHook(args.alert_command, timeout_s=timeout))
    if getattr(args, "alert_url", None):
        hooks.append(UrlHook(args.alert_url, timeout_s=timeout, shape=getattr(args, "alert_format", "json")))
        logger.info("alert events will be sent by %s", hooks[-1].name)  # the hook's name is redacted
    if getattr(args, "alert_email", None):
        hooks.append(EmailHook(args.alert_email, timeout_s=timeout))
        logger.info("alert events will be sent by %s", hooks[-1].name)
    options = {key: getattr(args, name) for name, key in _PASS_THROUGH.items() if getattr(args, name, None) is not None}
    return Monitor(class_names, fps, track=bool(getattr(args, "track", False)),
                   events_path=getattr(args, "events", None) or output_paths(out_path)["events"], hooks=hooks,
                   review_dir=getattr(args, "review_dir", None), source=source or Path(out_path).stem, **options)
