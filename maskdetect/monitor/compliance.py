"""Counting people per class and the compliance alert rule.

Compliance of a frame = fraction of the people in view whose (smoothed) class is ``with_mask``; a frame with
nobody in view has no compliance (None).

Alert rule (:class:`AlertRule`), all times are frame timestamps in seconds:

* **raise** when compliance stays below ``threshold`` for at least ``seconds``: on the first frame whose
  timestamp is ``>= seconds`` after the first below-threshold frame of an unbroken run;
* **clear** (hysteresis) when compliance stays at or above ``threshold + margin`` for at least
  ``clear_seconds`` (default: ``seconds``), measured the same way; values in between break both runs;
* **cooldown**: a new raise needs ``cooldown_s`` since the previous raise; a run that is long enough during
  the cooldown raises on its first below-threshold frame after the cooldown ends;
* **nobody in view**: such frames neither raise nor clear nor break a run, and the alert state stays as it is;
  but a run whose last frame with people is more than ``max_gap_s`` before the next frame with people is
  restarted (a face lost for a moment does not reset the clock, an empty room does).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from maskdetect.errors import ConfigError

logger = logging.getLogger(__name__)

WITH_MASK = 0
"""Class index counted as correctly masked (``maskdetect.CLASSES[0] == "with_mask"``)."""

_EPS = 1e-9


def compliance_fraction(class_ids: Sequence[int] | np.ndarray, positive_class: int = WITH_MASK) -> float | None:
    """Fraction of `class_ids` equal to `positive_class`; None when there is nobody.

    Example:
        >>> compliance_fraction([0, 0, 1, 2])
        0.5
        >>> compliance_fraction([]) is None
        True
    """
    class_ids = np.asarray(class_ids).reshape(-1)
    if not len(class_ids):
        return None
    return float(np.count_nonzero(class_ids == positive_class)) / len(class_ids)


def _most_held(counts: Counter[int], last_seen: dict[int, int]) -> int:
    """The class with the most frames; a tie goes to the one seen last."""
    return max(counts, key=lambda cls: (counts[cls], last_seen[cls]))


@dataclass
class TrackRecord:
    """What the counter knows about one track."""

    track_id: int
    first_frame: int
    last_frame: int
    first_s: float
    last_s: float
    frames: int = 0
    class_frames: Counter[int] = field(default_factory=Counter)
    class_last_seen: dict[int, int] = field(default_factory=dict)
    window_class_frames: dict[int, Counter[int]] = field(default_factory=dict)

    @property
    def final_class(self) -> int:
        """The smoothed class this track held for the most frames (ties: the later one)."""
        return _most_held(self.class_frames, self.class_last_seen)


@dataclass(frozen=True)
class FrameStat:
    """People in view in one frame, by class (smoothed class for tracked boxes)."""

    frame_index: int
    timestamp_s: float
    people_per_class: tuple[int, ...]
    fraction: float | None


class PeopleCounter:
    """Unique people per class over a video and per time window, plus the per-frame compliance series.

    Only tracked boxes (``tracker_id >= 0``) count as people for the unique counts; every box counts as a
    person in view for the per-frame compliance. Tracks seen in fewer than `min_track_frames` frames are
    flicker and are not counted. A track's class is the smoothed class it held for the most frames (over the
    whole video, or within one window for the per-window counts).

    Args:
        num_classes: Number of classes.
        window_s: Length of the counting windows in seconds (windows are ``[k * window_s, (k+1) * window_s)``).
        min_track_frames: Minimum frames a track must be seen in to be counted.
        positive_class: Class counted as compliant.
    """

    def __init__(self, num_classes: int, *, window_s: float = 10.0, min_track_frames: int = 5,
                 positive_class: int = WITH_MASK) -> None:
        if window_s <= 0:
            raise ConfigError(f"counting window must be positive seconds, got {window_s}")
        if min_track_frames < 1:
            raise ConfigError(f"min_track_frames must be >= 1, got {min_track_frames}")
        self.num_classes = num_classes
        self.window_s = float(window_s)
        self.min_track_frames = int(min_track_frames)
        self.positive_class = positive_class
        self.tracks: dict[int, TrackRecord] = {}
        self.frames: list[FrameStat] = []

    def update(self, frame_index: int, timestamp_s: float, class_ids: np.ndarray,
               tracker_ids: np.ndarray | None = None) -> FrameStat:
        """Record one frame; `class_ids` are the (smoothed) classes of every box in view."""
        class_ids = np.asarray(class_ids, np.int64).reshape(-1)
        per_class = tuple(int(n) for n in np.bincount(class_ids, minlength=self.num_classes)[: self.num_classes])
        stat = FrameStat(frame_index, float(timestamp_s), per_class,
                         compliance_fraction(class_ids, self.positive_class))
        self.frames.append(stat)
        if tracker_ids is not None:
            window = int(timestamp_s // self.window_s)
            for track_id, cls in zip(np.asarray(tracker_ids).reshape(-1).tolist(), class_ids.tolist()):
                if track_id < 0:
                    continue
                record = self.tracks.get(track_id)
                if record is None:
                    record = self.tracks[track_id] = TrackRecord(track_id, frame_index, frame_index,
                                                                 float(timestamp_s), float(timestamp_s))
                record.last_frame, record.last_s = frame_index, float(timestamp_s)
                record.frames += 1
                record.class_frames[cls] += 1
                record.class_last_seen[cls] = frame_index
                record.window_class_frames.setdefault(window, Counter())[cls] += 1
        return stat

    def counted_tracks(self) -> list[TrackRecord]:
        """Tracks long enough to count, by id."""
        return [r for _, r in sorted(self.tracks.items()) if r.frames >= self.min_track_frames]

    def totals(self) -> list[int]:
        """Unique people per class index over the whole video."""
        counts = [0] * self.num_classes
        for record in self.counted_tracks():
            counts[record.final_class] += 1
        return counts

    def windows(self) -> list[dict[str, Any]]:
        """Per window: unique people per class index and mean compliance over frames with people."""
        if not self.frames:
            return []
        last = int(self.frames[-1].timestamp_s // self.window_s)
        people = {k: [0] * self.num_classes for k in range(last + 1)}
        for record in self.counted_tracks():
            for k, counts in record.window_class_frames.items():
                # ties inside a window go to the class seen last in the whole track (a stable choice)
                people[k][_most_held(counts, record.class_last_seen)] += 1
        fractions: dict[int, list[float]] = {k: [] for k in people}
        for stat in self.frames:
            if stat.fraction is not None:
                fractions[int(stat.timestamp_s // self.window_s)].append(stat.fraction)
        return [{"start_s": k * self.window_s, "end_s": (k + 1) * self.window_s, "people": people[k],
                 "frames_with_people": len(fractions[k]),
                 "mean_compliance": float(np.mean(fractions[k])) if fractions[k] else None}
                for k in sorted(people)]

    def per_second(self) -> list[dict[str, Any]]:
        """Mean compliance over the frames with people in each whole second (None when nobody was seen)."""
        bins: dict[int, list[float]] = {}
        for stat in self.frames:
            bins.setdefault(int(stat.timestamp_s), [])
            if stat.fraction is not None:
                bins[int(stat.timestamp_s)].append(stat.fraction)
        return [{"second": s, "compliance": round(float(np.mean(v)), 4) if v else None}
                for s, v in sorted(bins.items())]


@dataclass(frozen=True)
class AlertSettings:
    """The compliance alert rule (see the module docstring for exact semantics).

    Attributes:
        threshold: Compliance below this is bad (fraction of people in view wearing a mask correctly).
        seconds: How long compliance must stay below `threshold` to raise.
        margin: Hysteresis: to clear, compliance must reach ``threshold + margin``.
        clear_seconds: How long it must stay there to clear (None: same as `seconds`).
        cooldown_s: Minimum time between two raises.
        max_gap_s: Longest stretch without anybody in view that does not restart a run.
    """

    threshold: float = 0.75
    seconds: float = 3.0
    margin: float = 0.10
    clear_seconds: float | None = None
    cooldown_s: float = 30.0
    max_gap_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"alert threshold must be a fraction in [0, 1], got {self.threshold}")
        for name in ("seconds", "margin", "cooldown_s", "max_gap_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"alert {name} must be >= 0, got {getattr(self, name)}")
        if self.clear_seconds is not None and self.clear_seconds < 0:
            raise ConfigError(f"alert clear_seconds must be >= 0, got {self.clear_seconds}")

    @property
    def clear_after_s(self) -> float:
        return self.seconds if self.clear_seconds is None else self.clear_seconds


EventKind = Literal["alert_raised", "alert_cleared"]


@dataclass(frozen=True)
class AlertEvent:
    """One raise or clear, as written to the events file and sent to hooks (:meth:`to_json`)."""

    event: EventKind
    alert_id: int
    frame_index: int
    timestamp_s: float
    compliance: float
    people_in_view: int
    run_start_s: float
    threshold: float

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("timestamp_s", "compliance", "run_start_s"):
            record[key] = round(record[key], 4)
        return record


class AlertRule:
    """State machine for the compliance alert. Feed it every frame in order with :meth:`update`.

    Example:
        >>> rule = AlertRule(AlertSettings(threshold=0.75, seconds=1.0, margin=0.1, cooldown_s=0))
        >>> [e.event for i in range(3) if (e := rule.update(i, i * 0.5, 0.5, 2))]
        ['alert_raised']
    """

    def __init__(self, settings: AlertSettings | None = None) -> None:
        self.settings = settings or AlertSettings()
        self.active = False
        self.alert_id = 0
        self.raised_at_s: float | None = None
        self._run_start: float | None = None
        self._last_evidence_s: float | None = None
        self._last_raise_s: float | None = None

    def update(self, frame_index: int, timestamp_s: float, compliance: float | None,
               people_in_view: int) -> AlertEvent | None:
        """Advance by one frame; return the event it triggers, if any."""
        s = self.settings
        if compliance is None:  # nobody in view: neither raise, clear, nor break a run
            return None
        if self._last_evidence_s is not None and timestamp_s - self._last_evidence_s > s.max_gap_s + _EPS:
            self._run_start = None
        self._last_evidence_s = timestamp_s
        if not self.active:
            if compliance >= s.threshold:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = timestamp_s
            long_enough = timestamp_s - self._run_start >= s.seconds - _EPS
            cooled = self._last_raise_s is None or timestamp_s - self._last_raise_s >= s.cooldown_s - _EPS
            if not (long_enough and cooled):
                return None
            self.active, self.alert_id = True, self.alert_id + 1
            self._last_raise_s = self.raised_at_s = timestamp_s
            kind: EventKind = "alert_raised"
        else:
            if compliance < s.threshold + s.margin - _EPS:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = timestamp_s
            if timestamp_s - self._run_start < s.clear_after_s - _EPS:
                return None
            self.active = False
            kind = "alert_cleared"
        event = AlertEvent(kind, self.alert_id, frame_index, float(timestamp_s), float(compliance),
                           int(people_in_view), float(self._run_start), s.threshold)
        self._run_start = None
        logger.info("%s #%d at %.2f s (frame %d): compliance %.0f%% of %d", kind, self.alert_id, timestamp_s,
                    frame_index, 100 * compliance, people_in_view)
        return event
