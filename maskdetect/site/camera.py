"""One camera of a site: its stream (reconnected with backoff), its recording segments, its monitor, zones,
privacy and live state.

:class:`CameraRunner` is a thread. Per connection it opens the stream once (newest-frame semantics,
:class:`~maskdetect.infer.sources.LiveCapture`) and runs one :func:`~maskdetect.infer.loop.run_loop` per recording
segment (``duration_s`` = the segment's length) over a :class:`SegmentSource` that hands on the connection's
frames and does not close it. So each segment is complete on its own (``<stamp>.mp4`` and
``<stamp>.detections.jsonl``), and a drop ends the current segment cleanly: the camera shows ``reconnecting``,
retries with backoff (0.5 s doubling to :data:`MAX_BACKOFF_S`), and resumes in a new segment.

One :class:`~maskdetect.monitor.monitor.Monitor` per camera lives across segments and reconnects (tracks and
alerts do not restart every ten minutes): :class:`CameraObserver` feeds it camera-wide frame numbers and times,
counts people per zone, and publishes what the dashboard shows in a :class:`CameraState`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from maskdetect.detections import Detections, box_iou
from maskdetect.errors import MaskdetectError, VideoError
from maskdetect.infer.sinks import FrameResult
from maskdetect.infer.sources import Frame, Source
from maskdetect.redact import redact
from maskdetect.site.config import CameraConfig, Zone

if TYPE_CHECKING:
    from maskdetect.infer.predictor import Predictor

logger = logging.getLogger(__name__)

#: Longest wait between two reconnection attempts (so a stream that returns is read again within ~this).
MAX_BACKOFF_S = 3.0
FIRST_BACKOFF_S = 0.5
#: Seconds of per-second history kept for the dashboard's chart.
HISTORY_S = 3600
#: Alert events (with their snapshots) kept for the dashboard.
ALERTS_KEPT = 100
#: Fields a ``--privacy blur`` detection record keeps.
PRIVATE_FIELDS = ("frame", "time_s", "wall_time", "bbox_xyxy", "label", "zones")
PRIVACY_MODES = ("off", "blur")
SEGMENT_FORMAT = "%Y%m%d-%H%M%S"


def segment_stamp(when: float | None = None) -> str:
    """``YYYYmmdd-HHMMSS`` (UTC) of `when` (epoch seconds; default now): the stem of a segment's files."""
    return datetime.fromtimestamp(time.time() if when is None else when, timezone.utc).strftime(SEGMENT_FORMAT)


# -- zones ----------------------------------------------------------------------------------------------------
def zone_membership(xyxy: np.ndarray, zones: Sequence[Zone]) -> np.ndarray:
    """``(boxes, zones)`` booleans: the centre of each box lies inside each zone's polygon."""
    from matplotlib.path import Path as Polygon

    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    inside = np.zeros((len(xyxy), len(zones)), bool)
    if len(xyxy):
        centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
        for j, zone in enumerate(zones):
            inside[:, j] = Polygon(np.asarray(zone.polygon)).contains_points(centres)
    return inside


# -- detecting every K-th frame -------------------------------------------------------------------------------
class CarryingPredictor:
    """Runs the detector on every `every`-th frame only, and carries the boxes over the frames between.

    ByteTrack (``trackers``) predicts a track's box with its Kalman filter internally but returns boxes only for
    the detections it is given, so it cannot fill the skipped frames itself. Here each box of the last detected
    frame is matched to the nearest box of the detected frame before it (centres at most the box's longer side
    apart); a matched box moves on at the per-frame velocity of that pair, an unmatched one stays put. The tracker then keeps its id by IoU as usual.

    Args:
        predictor: the shared model (anything with ``predict`` and ``class_names``).
        every: K >= 1 (1: detect every frame).
        threshold: this camera's minimum score over the model's own (None: the model's).
    """

    def __init__(self, predictor: Any, every: int = 1, threshold: float | None = None) -> None:
        if every < 1:
            raise MaskdetectError(f"--detect-every {every}: must be at least 1")
        self.predictor, self.every, self.threshold = predictor, every, threshold
        self.class_names = predictor.class_names
        self._calls = 0
        self._last = Detections.empty()
        self._velocity = np.zeros((0, 4), np.float32)
        self._since = 0
        self.detected = 0

    def predict(self, image: np.ndarray) -> Detections:
        """Detections for this frame: the model's on every K-th call, carried ones in between."""
        index, self._calls = self._calls, self._calls + 1
        if index % self.every == 0:
            detections = self.predictor.predict(image)
            if self.threshold is not None:
                detections = detections.with_threshold(self.threshold)
            self._velocity = self._match_velocity(self._last, detections, max(1, self._since + 1))
            self._last, self._since = detections, 0
            self.detected += 1
            return detections
        self._since += 1
        if not len(self._last):
            return self._last
        height, width = image.shape[:2]
        moved = self._last.xyxy + self._velocity * self._since
        moved = np.clip(moved, 0, [width, height, width, height]).astype(np.float32)
        return Detections(xyxy=moved, confidence=self._last.confidence, class_id=self._last.class_id)

    @staticmethod
    def _match_velocity(previous: Detections, current: Detections, frames: int) -> np.ndarray:
        """Per-frame velocity of each current box from its previous one: the nearest centre within the box's
        longer side, each previous box used once (nearest pairs first)."""
        velocity = np.zeros((len(current), 4), np.float32)
        if not len(previous) or not len(current):
            return velocity
        centre = lambda xyxy: (xyxy[:, :2] + xyxy[:, 2:]) / 2  # noqa: E731
        distance = np.linalg.norm(centre(current.xyxy)[:, None] - centre(previous.xyxy)[None], axis=2)
        reach = np.max(current.xyxy[:, 2:] - current.xyxy[:, :2], axis=1)
        for flat in np.argsort(distance, axis=None):
            i, j = np.unravel_index(flat, distance.shape)
            if distance[i, j] <= reach[i] and not velocity[i].any() and np.isfinite(distance[:, j]).all():
                velocity[i] = (current.xyxy[i] - previous.xyxy[j]) / frames
                distance[:, j] = np.inf
        return velocity


# -- drawing --------------------------------------------------------------------------------------------------
def blur_boxes(image: np.ndarray, xyxy: np.ndarray, *, grow: float = 0.15) -> np.ndarray:
    """A copy of `image` with every box (grown by `grow` of its size on each side) pixelated beyond recognition."""
    import cv2

    out = image.copy()
    height, width = out.shape[:2]
    for x0, y0, x1, y1 in np.asarray(xyxy, np.float32).reshape(-1, 4):
        dx, dy = (x1 - x0) * grow, (y1 - y0) * grow
        a, b = max(0, int(x0 - dx)), max(0, int(y0 - dy))
        c, d = min(width, int(np.ceil(x1 + dx))), min(height, int(np.ceil(y1 + dy)))
        if c - a < 2 or d - b < 2:
            continue
        region = out[b:d, a:c]
        small = cv2.resize(region, (max(1, (c - a) // 12), max(1, (d - b) // 12)), interpolation=cv2.INTER_AREA)
        out[b:d, a:c] = cv2.GaussianBlur(cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_NEAREST),
                                         (0, 0), 3)
    return out


class SiteAnnotator:
    """The frame annotator of a site camera: faces blurred first (``privacy="blur"``), zones outlined, then the
    usual boxes, labels and banner (:class:`~maskdetect.infer.annotate.FrameAnnotator`)."""

    def __init__(self, class_names: Sequence[str], zones: Sequence[Zone] = (), privacy: str = "off") -> None:
        from maskdetect.infer.annotate import FrameAnnotator

        self.base = FrameAnnotator(class_names)
        self.zones, self.privacy = tuple(zones), privacy

    def annotate(self, frame: np.ndarray, detections: Detections, banner: str | None = None) -> np.ndarray:
        import cv2

        image = blur_boxes(frame, detections.xyxy) if self.privacy == "blur" else frame
        if self.zones:
            image = image.copy() if image is frame else image
            for zone in self.zones:
                points = np.round(np.asarray(zone.polygon)).astype(np.int32)
                cv2.polylines(image, [points], True, (255, 210, 0), 2)
                cv2.putText(image, zone.name, tuple(int(v) + 4 for v in points[0] + (0, 16)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 210, 0), 1, cv2.LINE_AA)
        return self.base.annotate(image, detections, banner=banner)


# -- live state -----------------------------------------------------------------------------------------------
@dataclass
class CameraState:
    """What a camera is doing now, for the dashboard and its API (updated by the camera's thread).

    Attributes:
        status: ``connecting``, ``live``, ``reconnecting``, ``ended`` or ``failed``.
        frames: frames processed since the start; reconnects: connections after the first; segments: recording
            segments started.
        people: people in view in the last frame; zones: ``{zone: {"people", "compliance"}}`` in it.
        compliance: fraction wearing masks correctly in the last frame with people (None: nobody yet).
        alert_active: a compliance alert is raised now.
        history: one point per second with people: ``{"t", "people", "compliance"}``, the last hour.
        alerts: raised / cleared events, newest last, each with ``snapshot`` (a file under the camera's folder).
        jpeg: the last annotated frame as JPEG (only kept when a dashboard asks for it).
    """

    name: str
    zone_names: tuple[str, ...] = ()
    status: str = "connecting"
    frames: int = 0
    fps: float = 0.0
    reconnects: int = 0
    segments: int = 0
    people: int = 0
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)
    compliance: float | None = None
    alert_active: bool = False
    last_error: str | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY_S))
    alerts: deque = field(default_factory=lambda: deque(maxlen=ALERTS_KEPT))
    jpeg: bytes | None = field(default=None, repr=False)
    pending_events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    frame_ready: threading.Condition = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.frame_ready = threading.Condition(self.lock)

    def set_status(self, status: str, error: str | None = None) -> None:
        with self.lock:
            self.status = status
            if error is not None:
                self.last_error = redact(error)

    def to_dict(self, *, history: bool = False) -> dict[str, Any]:
        """JSON-ready: everything but the frame (`history`: with the last hour's points)."""
        with self.lock:
            data = {"name": self.name, "status": self.status, "frames": self.frames, "fps": round(self.fps, 2),
                    "reconnects": self.reconnects, "segments": self.segments, "people": self.people,
                    "zones": {k: dict(v) for k, v in self.zones.items()},
                    "compliance": None if self.compliance is None else round(self.compliance, 4),
                    "alert_active": self.alert_active, "last_error": self.last_error,
                    "alerts": list(self.alerts)}
            if history:
                data["history"] = list(self.history)
        return data


class CameraObserver:
    """The loop's observer for one camera across all its segments: the camera's
    :class:`~maskdetect.monitor.monitor.Monitor` (tracking, compliance, alerts, hooks, events JSON Lines), plus
    zone counts and the live :class:`CameraState`. The monitor sees camera-wide frame numbers and times.

    The loop's ``start``, ``close`` and ``abort`` begin and end one segment only: the monitor is started at the
    camera's first connection (its summary and plot go beside `summary_anchor`) and closed by :meth:`finish`.
    """

    def __init__(self, monitor: Any, state: CameraState, zones: Sequence[Zone] = (), *,
                 summary_anchor: Path | None = None) -> None:
        self.monitor, self.state, self.zones = monitor, state, tuple(zones)
        self.summary_anchor = summary_anchor
        self.frame_index = -1
        self._started = False
        self._t0 = time.monotonic()
        self._events_seen = 0
        self._second: tuple[int, list[int], list[float]] | None = None
        self._rate: deque = deque(maxlen=30)

    def planned_outputs(self, source: Any, outputs: Sequence[Path]) -> dict[str, Path]:
        """A segment adds no file of the observer's (the camera's monitor files are checked once by ``watch``)."""
        return {}

    def start(self, source: Any, class_names: Sequence[str], outputs: Sequence[Path]) -> None:
        """The first segment starts the camera's monitor (named after the camera, at the stream's frame rate)."""
        if self._started:
            return
        from dataclasses import replace

        self.monitor.start(replace(source, name=self.state.name), class_names,
                           [self.summary_anchor] if self.summary_anchor is not None else [])
        self._started = True

    def update(self, detections: Detections, frame_index: int, timestamp_s: float | None = None,
               frame: np.ndarray | None = None) -> Detections:
        from maskdetect.monitor.compliance import WITH_MASK
        from maskdetect.monitor.track import SMOOTHED_CLASS_KEY

        self.frame_index += 1
        now = time.monotonic()
        detections = self.monitor.update(detections, self.frame_index, now - self._t0, frame=frame)
        classes = np.asarray(detections.data.get(SMOOTHED_CLASS_KEY, detections.class_id))
        inside = zone_membership(detections.xyxy, self.zones)
        if self.zones:
            names = [",".join(z.name for z, hit in zip(self.zones, row) if hit) for row in inside]
            detections = Detections(xyxy=detections.xyxy, confidence=detections.confidence,
                                    class_id=detections.class_id, tracker_id=detections.tracker_id,
                                    data={**detections.data, "zones": np.asarray(names, dtype=str)})
        zones = {}
        for j, zone in enumerate(self.zones):
            members = classes[inside[:, j]]
            zones[zone.name] = {"people": int(len(members)),
                                "compliance": round(float(np.mean(members == WITH_MASK)), 4) if len(members) else None}
        compliance = float(np.mean(classes == WITH_MASK)) if len(classes) else None
        events = self.monitor.events[self._events_seen:]
        self._events_seen = len(self.monitor.events)
        self._rate.append(now)
        with self.state.lock:
            state = self.state
            state.frames += 1
            state.fps = (len(self._rate) - 1) / (self._rate[-1] - self._rate[0]) if len(self._rate) > 1 else 0.0
            state.people, state.zones = int(len(classes)), zones
            if compliance is not None:
                state.compliance = compliance
            state.alert_active = bool(self.monitor.alert_active)
            state.pending_events.extend(events)
            self._add_history(time.time(), len(classes), compliance)
        return detections

    def _add_history(self, wall: float, people: int, compliance: float | None) -> None:
        second = int(wall)
        if self._second is not None and self._second[0] != second:
            t, counts, fractions = self._second
            self.state.history.append({"t": t, "people": max(counts),
                                       "compliance": round(float(np.mean(fractions)), 4) if fractions else None})
            self._second = None
        if self._second is None:
            self._second = (second, [], [])
        self._second[1].append(people)
        if compliance is not None:
            self._second[2].append(compliance)

    def banner(self, frame_index: int) -> str | None:
        return self.monitor.banner(self.frame_index)

    def close(self, *, source_frames: dict[str, Any] | None = None) -> dict[str, Any]:
        """End of a segment: the camera's monitor goes on."""
        return {"camera": self.state.name, "frames": self.state.frames}

    def abort(self) -> None:
        """A segment failed: its sinks are gone; the camera's monitor and events log go on."""

    def finish(self) -> dict[str, Any] | None:
        """The camera stopped: close its monitor (summary, compliance plot, events file); None if the camera
        never connected."""
        return self.monitor.close() if self._started else None


# -- sinks ----------------------------------------------------------------------------------------------------
class JsonLinesSink:
    """Detection records streamed to a JSON Lines file, one line per box, as they come (never kept in memory).

    With `private`, each record keeps only :data:`PRIVATE_FIELDS` (boxes and classes; no scores, no track ids).
    The file is ours (a new segment stem), so an aborted segment keeps what was written.
    """

    needs_image = False

    def __init__(self, path: str | Path, *, private: bool = False) -> None:
        self.path = Path(path)
        self.private = private
        self._file: Any = None
        self.lines = 0

    def write(self, result: FrameResult) -> bool:
        import json

        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        for record in result.records:
            if self.private:
                record = {k: v for k, v in record.items() if k in PRIVATE_FIELDS}
            self._file.write(json.dumps(record) + "\n")
            self.lines += 1
        self._file.flush()
        return True

    def close(self) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()  # a segment with no detection still has its (empty) file
        else:
            self._file.close()
            self._file = None

    def abort(self) -> None:
        """Keep what was written (a live log); a file that got nothing is removed."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.lines == 0:
            self.path.unlink(missing_ok=True)


class LiveSink:
    """Hands the annotated frames to the dashboard (the newest as JPEG, at most `max_fps` a second) and saves a
    snapshot of the frame on which each alert was raised or cleared (``alerts/<stamp>-<event>-<id>.jpg``)."""

    needs_image = True
    path = None

    def __init__(self, state: CameraState, camera_dir: Path, *, live_jpeg: bool, max_fps: float = 10.0) -> None:
        self.state, self.camera_dir, self.live_jpeg = state, camera_dir, live_jpeg
        self._min_gap = 1.0 / max_fps
        self._last = 0.0

    def write(self, result: FrameResult) -> bool:
        import cv2

        from maskdetect.infer.sinks import write_image

        with self.state.lock:
            events, self.state.pending_events = self.state.pending_events, []
        for event in events:
            name = f"{segment_stamp()}-{event['event']}-{event.get('alert_id', 0)}.jpg"
            write_image(self.camera_dir / "alerts" / name, result.annotated)
            with self.state.lock:
                self.state.alerts.append({**event, "wall_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                          "snapshot": f"alerts/{name}"})
        now = time.monotonic()
        if self.live_jpeg and now - self._last >= self._min_gap:
            self._last = now
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(result.annotated, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, 75])
            if ok:
                with self.state.frame_ready:
                    self.state.jpeg = jpeg.tobytes()
                    self.state.frame_ready.notify_all()
        return True

    def close(self) -> None:
        pass

    abort = close


# -- a segment of a connection ----------------------------------------------------------------------------------
class SegmentSource(Source):
    """The next frames of an open live connection, as a source of its own for one segment's loop.

    Its times start at 0 (a segment's recording starts at its first frame); its records carry the wall-clock
    ``wall_time`` too. Closing it leaves the connection open. When the connection ends or fails, the segment
    ends cleanly (the loop finalises its outputs) and :attr:`dropped` tells the camera to reconnect.
    """

    kind = "stream"
    live = True

    def __init__(self, connection: Source, frames: Iterator[Frame], stop: threading.Event, *,
                 name: str | None = None) -> None:
        super().__init__(name or connection.name, connection.location)
        self.fps, self.size_wh = connection.fps, getattr(connection, "size_wh", None)
        self._connection, self._frames, self._stop = connection, frames, stop
        self.dropped = False
        self.error: str | None = None

    @property
    def frames_dropped(self) -> int:  # type: ignore[override]
        return self._connection.frames_dropped

    def __iter__(self) -> Iterator[Frame]:
        first: float | None = None
        index = 0
        while not self._stop.is_set():
            try:
                frame = next(self._frames)
            except StopIteration:
                self.dropped = True
                return
            except (VideoError, OSError) as exc:
                self.dropped, self.error = True, redact(str(exc))
                return
            first = frame.time_s if first is None else first
            time_s = (frame.time_s or 0.0) - (first or 0.0)
            yield Frame(frame.image, index, time_s=time_s,
                        tag={"frame": index, "time_s": round(time_s, 3),
                             "wall_time": round(time.time(), 3)})
            index += 1


# -- the camera -----------------------------------------------------------------------------------------------
class CameraRunner(threading.Thread):
    """One camera's thread: connect, run segment after segment, reconnect with backoff, until `stop` is set.

    Args:
        camera: its settings.
        predictor: the site's one model (shared by every camera; :class:`Predictor` serialises its calls).
        out_dir: the site's output folder (this camera writes under ``out_dir/<name>/``).
        monitor: the camera's monitor (:func:`maskdetect.site.watch.make_monitor`), started at its first
            connection.
        segment_s: length of a recording segment.
        detect_every: run the detector on every K-th frame (:class:`CarryingPredictor`).
        privacy: ``"off"`` or ``"blur"`` (faces blurred in recordings, snapshots and the dashboard; records keep
            only boxes and classes).
        record: write the H.264 segments (the detections JSON Lines are always written).
        live_jpeg: keep the newest annotated frame for a dashboard.
        on_segment: called with the camera's folder after each segment is finalised (retention).
        open_connection: opens the camera's source (default :func:`maskdetect.infer.sources.open_source` live).
    """

    def __init__(self, camera: CameraConfig, predictor: "Predictor", out_dir: Path, monitor: Any, *,
                 stop: threading.Event, segment_s: float = 600.0, detect_every: int = 1, privacy: str = "off",
                 record: bool = True, live_jpeg: bool = False, on_segment: Callable[[Path], None] | None = None,
                 open_connection: Callable[[str], Source] | None = None, read_timeout_s: float = 5.0,
                 encoder: Any = None) -> None:
        super().__init__(name=f"camera-{camera.name}", daemon=True)
        self.camera, self.out_dir = camera, Path(out_dir)
        self.camera_dir = self.out_dir / camera.name
        self.state = CameraState(camera.name, tuple(z.name for z in camera.zones))
        self.predictor = CarryingPredictor(predictor, detect_every, camera.threshold)
        self.observer = CameraObserver(monitor, self.state, camera.zones,
                                       summary_anchor=self.camera_dir / "camera.mp4")
        self.annotator = SiteAnnotator(predictor.class_names, camera.zones, privacy)
        self.stop_event, self.segment_s, self.privacy = stop, segment_s, privacy
        self.record, self.live_jpeg, self.on_segment, self.encoder = record, live_jpeg, on_segment, encoder
        self.read_timeout_s = read_timeout_s
        self._open = open_connection or self._open_source
        self.current_stem: str | None = None
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def _open_source(self, source: str) -> Source:
        from maskdetect.infer.sources import LiveCapture

        # LiveCapture itself: open_source would take a URL's "?query" for a file pattern
        return LiveCapture(int(source) if source.isdigit() else source, read_timeout_s=self.read_timeout_s)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by watch(); the other cameras go on
            self.error = exc
            self.state.set_status("failed", str(exc))
            logger.error("camera %s failed: %s", self.camera.name, redact(str(exc)))
        finally:
            try:
                self.summary = self.observer.finish()
            except Exception as exc:
                logger.warning("camera %s: could not write its summary: %s", self.camera.name, redact(str(exc)))

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        connected_once = False
        is_file = Path(self.camera.source).is_file()
        while not self.stop_event.is_set():
            self.state.set_status("reconnecting" if connected_once else "connecting")
            try:
                connection = self._open(self.camera.source)
            except MaskdetectError as exc:
                self.state.set_status("reconnecting" if connected_once else "connecting", str(exc))
                logger.warning("camera %s: %s; retrying in %.1f s", self.camera.name, redact(str(exc)), backoff)
                self.stop_event.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            if connected_once:
                with self.state.lock:
                    self.state.reconnects += 1
                logger.info("camera %s: reconnected", self.camera.name)
            connected_once, backoff = True, FIRST_BACKOFF_S
            self.state.set_status("live")
            try:
                self._segments(connection)
            finally:
                connection.close()
            if is_file:
                self.state.set_status("ended")
                return
            if not self.stop_event.is_set():
                logger.warning("camera %s: the stream dropped; reconnecting", self.camera.name)

    def _segments(self, connection: Source) -> None:
        from maskdetect.infer.loop import run_loop
        from maskdetect.infer.sinks import VideoSink

        frames = iter(connection)
        while not self.stop_event.is_set():
            segment = SegmentSource(connection, frames, self.stop_event, name=self.camera.name)
            stem = segment_stamp()
            if self.current_stem is not None and stem <= self.current_stem:
                stem = f"{self.current_stem}-{self.state.segments}"  # two segments in one second (reconnects)
            self.current_stem = stem
            sinks: list[Any] = []
            if self.record:
                sinks.append(VideoSink(self.camera_dir / f"{stem}.mp4", connection.fps, realtime=True,
                                       encoder=self.encoder))
            sinks.append(JsonLinesSink(self.camera_dir / f"{stem}.detections.jsonl", private=self.privacy == "blur"))
            sinks.append(LiveSink(self.state, self.camera_dir, live_jpeg=self.live_jpeg))
            with self.state.lock:
                self.state.segments += 1
            try:
                run_loop(self.predictor, segment, sinks, observer=self.observer, annotator=self.annotator,
                         duration_s=self.segment_s, progress=False)
            except VideoError as exc:  # no frame in this segment: the connection is gone
                segment.dropped, segment.error = True, str(exc)
            finally:
                self.current_stem = None
                if self.on_segment is not None:
                    self.on_segment(self.camera_dir)
            if segment.dropped:
                if segment.error:
                    self.state.set_status("reconnecting", segment.error)
                return
