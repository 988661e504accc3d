"""Multi-object tracking of faces (ByteTrack from the ``trackers`` package) and per-track class smoothing.

ByteTrack here is class-agnostic: it matches boxes by IoU only, so a face keeps its id when the detector's
class for it flips between frames. :class:`ClassSmoother` then gives each track the class it has shown most
over a sliding window, so the label drawn on a face does not flicker.

The conversion between our :class:`~maskdetect.detections.Detections` and ``supervision.Detections`` (which the
``trackers`` package consumes) is :meth:`~maskdetect.detections.Detections.to_supervision`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from maskdetect.detections import Detections
from maskdetect.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import supervision as sv

logger = logging.getLogger(__name__)

SmoothingMethod = Literal["majority", "score"]
SMOOTHED_CLASS_KEY = "smoothed_class_id"
UNTRACKED = -1


def to_supervision(detections: Detections) -> "sv.Detections":
    """Our `Detections` -> ``supervision.Detections`` with ``data["index"]`` = position in the input.

    The index lets :class:`Tracker` put the tracker's output (which may be reordered) back in input order.
    """
    converted = detections.to_supervision()  # the one converter, in maskdetect.detections
    converted.data = {"index": np.arange(len(detections))}
    return converted


class ClassSmoother:
    """Per-track class over the last `window` observations, by vote count or by summed confidence.

    A tie keeps the track's current smoothed class if it is among the tied classes, otherwise the class
    seen most recently among them wins; so a class changes only when another one strictly out-votes it.

    Args:
        window: Number of most recent observations per track that vote (>= 1; 1 disables smoothing).
        method: ``"majority"`` (one vote per frame) or ``"score"`` (each vote weighted by confidence).

    Example:
        >>> s = ClassSmoother(window=3)
        >>> [s.update(7, c) for c in (0, 1, 1, 0, 0)]
        [0, 0, 1, 1, 0]
    """

    def __init__(self, window: int = 15, method: SmoothingMethod = "majority") -> None:
        if window < 1:
            raise ConfigError(f"class smoothing window must be >= 1 frame, got {window}")
        if method not in ("majority", "score"):
            raise ConfigError(f"class smoothing method must be 'majority' or 'score', got {method!r}")
        self.window = int(window)
        self.method = method
        self._votes: dict[int, deque[tuple[int, float]]] = {}
        self._current: dict[int, int] = {}

    def update(self, track_id: int, class_id: int, confidence: float = 1.0) -> int:
        """Add one observation of `track_id` and return its smoothed class."""
        votes = self._votes.setdefault(track_id, deque(maxlen=self.window))
        votes.append((int(class_id), float(confidence) if self.method == "score" else 1.0))
        totals: dict[int, float] = {}
        last_seen: dict[int, int] = {}
        for position, (cls, weight) in enumerate(votes):
            totals[cls] = totals.get(cls, 0.0) + weight
            last_seen[cls] = position
        best = max(totals.values())
        tied = [cls for cls, total in totals.items() if math.isclose(total, best, rel_tol=1e-9, abs_tol=1e-12)]
        current = self._current.get(track_id)
        smoothed = current if current in tied else max(tied, key=last_seen.__getitem__)
        self._current[track_id] = smoothed
        return smoothed

    def current(self, track_id: int) -> int | None:
        """The smoothed class last returned for `track_id`, or None if it was never seen."""
        return self._current.get(track_id)

    def forget(self, keep: set[int]) -> None:
        """Drop the state of every track not in `keep` (bounded memory on long videos)."""
        for track_id in [t for t in self._votes if t not in keep]:
            del self._votes[track_id]
            self._current.pop(track_id, None)


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack parameters, with defaults suited to face boxes that were already score-thresholded.

    Attributes:
        lost_track_s: Seconds a track survives without a matching box (occlusion, missed detection).
        activation_threshold: Minimum confidence for a box to start a new track.
        high_threshold: Boxes at or above this are matched first; lower ones only extend existing tracks.
        min_iou: Minimum IoU between a track's predicted box and a detection to match them.
        min_consecutive_frames: Frames a new track must be matched before it gets an id (before that the
            box is returned with ``tracker_id == -1``). ByteTrack counts the first sighting, so with the
            default of 2 a face gets its id on its second frame.
    """

    lost_track_s: float = 1.0
    activation_threshold: float = 0.5
    high_threshold: float = 0.5
    min_iou: float = 0.1
    min_consecutive_frames: int = 2


class Tracker:
    """Assigns stable ids and smoothed classes to per-frame detections.

    Args:
        fps: Frame rate of the video (scales the lost-track buffer).
        smoothing_window: Observations per track that vote for its class (see :class:`ClassSmoother`).
        smoothing: ``"majority"`` or ``"score"``.
        settings: ByteTrack parameters.

    Example:
        >>> tracker = Tracker(fps=25)
        >>> box = Detections(xyxy=[[10, 10, 50, 50]], confidence=[0.9], class_id=[0])
        >>> [int(tracker.update(box).tracker_id[0]) for _ in range(3)]
        [-1, 1, 1]
    """

    def __init__(self, fps: float, *, smoothing_window: int = 15, smoothing: SmoothingMethod = "majority",
                 settings: TrackerSettings | None = None) -> None:
        if not fps > 0:
            raise ConfigError(f"fps must be positive, got {fps}")
        try:
            from trackers import ByteTrackTracker
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from maskdetect.compat import TRACKERS_INSTALL
            raise ConfigError(f"tracking needs the 'trackers' package: {TRACKERS_INSTALL}") from exc
        self.settings = settings or TrackerSettings()
        s = self.settings
        self._byte_track = ByteTrackTracker(
            lost_track_buffer=max(0, round(s.lost_track_s * 30.0)),  # the library counts 30-fps frames
            frame_rate=float(fps),
            track_activation_threshold=s.activation_threshold,
            minimum_consecutive_frames=s.min_consecutive_frames,
            minimum_iou_threshold=s.min_iou,
            high_conf_det_threshold=s.high_threshold,
        )
        self.smoother = ClassSmoother(smoothing_window, smoothing)
        self.changed_track_ids: set[int] = set()
        """Tracks whose smoothed class changed on the last :meth:`update`."""

    def update(self, detections: Detections, timestamp_s: float | None = None) -> Detections:
        """Track one frame.

        Args:
            detections: This frame's boxes (any order, any classes).
            timestamp_s: Frame time; lets the motion model handle skipped frames. None = one frame step.

        Returns:
            The same boxes in the same order, with ``tracker_id`` (1-based; -1 while a track is not yet
            confirmed) and ``data["smoothed_class_id"]`` (the raw class for unconfirmed boxes).
        """
        out = self._byte_track.update(to_supervision(detections), timestamp=timestamp_s)
        tracker_ids = np.full(len(detections), UNTRACKED, np.int64)
        if len(out):
            ids = np.asarray(out.tracker_id, np.int64)
            tracker_ids[np.asarray(out.data["index"], np.int64)] = np.where(ids >= 0, ids + 1, UNTRACKED)
        smoothed = detections.class_id.copy()
        self.changed_track_ids = set()
        for i, track_id in enumerate(tracker_ids):
            if track_id == UNTRACKED:
                continue
            before = self.smoother.current(int(track_id))
            smoothed[i] = self.smoother.update(int(track_id), int(detections.class_id[i]),
                                               float(detections.confidence[i]))
            if before is not None and before != smoothed[i]:
                self.changed_track_ids.add(int(track_id))
        alive = {int(t.tracker_id) + 1 for t in self._byte_track.tracks if t.tracker_id >= 0}
        self.smoother.forget(alive | {int(t) for t in tracker_ids if t != UNTRACKED})
        data = dict(detections.data)
        data[SMOOTHED_CLASS_KEY] = smoothed
        return Detections(xyxy=detections.xyxy, confidence=detections.confidence, class_id=detections.class_id,
                          tracker_id=tracker_ids, data=data, class_names=detections.class_names)
