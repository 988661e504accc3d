"""``maskdetect watch``: N cameras in one process with one model, each with its own tracker, monitor, alerts,
zones and recording segments (:class:`~maskdetect.site.camera.CameraRunner`), recordings kept within a retention
limit, and optionally the live web dashboard (:mod:`maskdetect.site.dashboard`).

Layout of the output folder::

    OUT/<camera>/<YYYYmmdd-HHMMSS>.mp4                 recording segments (UTC start time)
    OUT/<camera>/<YYYYmmdd-HHMMSS>.detections.jsonl    one line per detected face, streamed
    OUT/<camera>/events.jsonl                          alert events, streamed
    OUT/<camera>/alerts/<stamp>-<event>-<id>.jpg       the frame of each alert raised / cleared
    OUT/<camera>/camera.summary.json, camera.compliance.png   written when the watch ends

Example:
    >>> summary = watch(load_site("site.yaml"), "workspace/site", duration_s=60)        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from maskdetect.errors import ConfigError
from maskdetect.infer.loop import stop_signals_as_interrupt
from maskdetect.redact import redact
from maskdetect.site.camera import PRIVACY_MODES, CameraRunner
from maskdetect.site.config import CameraConfig

logger = logging.getLogger(__name__)

_SEGMENT_FILE = re.compile(r"^(\d{8}-\d{6}(?:-\d+)?)(?:\.mp4|\.detections\.jsonl)$")


def make_monitor(camera: CameraConfig, events_path: Path, *, blur_faces: bool = False) -> Any:
    """The camera's :class:`~maskdetect.monitor.monitor.Monitor`: tracking on, its alert settings and hooks,
    events to `events_path` (the one place that knows the monitor's settings)."""
    from maskdetect.monitor.hooks import CommandHook, EmailHook, UrlHook
    from maskdetect.monitor.monitor import Monitor, MonitorSettings

    hooks: list[Any] = []
    for hook in camera.hooks:
        timeout = float(hook.get("timeout", 10.0))
        if "url" in hook:
            hooks.append(UrlHook(str(hook["url"]), timeout_s=timeout, shape=str(hook.get("format", "json"))))
        if "command" in hook:
            hooks.append(CommandHook(hook["command"], timeout_s=timeout))
        if "email" in hook:
            emails = hook["email"]
            hooks.append(EmailHook([emails] if isinstance(emails, str) else list(emails), timeout_s=timeout))
    rule = {"alert_threshold": camera.alert_threshold, "alert_seconds": camera.alert_seconds,
            "alert_margin": camera.alert_margin, "alert_cooldown_s": camera.alert_cooldown_s}
    settings = MonitorSettings(track=True, events_path=events_path, snapshot_blur_faces=blur_faces,
                               **{k: v for k, v in rule.items() if v is not None})
    return Monitor(settings, hooks=hooks)


class Retention:
    """Deletes the oldest closed recording segments (a segment's ``.mp4`` and ``.detections.jsonl``) and alert
    snapshots of a site folder while they are older than `hours` or, all cameras together, larger than `gb`.
    Only files named as ``watch`` names them are touched; segments being written are never deleted."""

    def __init__(self, out_dir: Path, *, hours: float | None = None, gb: float | None = None,
                 busy: Callable[[], set[Path]] = set) -> None:
        if hours is not None and hours <= 0 or gb is not None and gb <= 0:
            raise ConfigError("--retention-hours and --retention-gb must be positive")
        self.out_dir, self.hours, self.gb, self.busy = Path(out_dir), hours, gb, busy
        self._lock = threading.Lock()
        self.deleted: list[str] = []

    def _groups(self) -> tuple[list[tuple[float, int, list[Path]]], int]:
        """Closed segments and snapshots, oldest first, as (mtime, bytes, files); and the bytes being written."""
        groups: dict[Path, list[Path]] = {}
        busy, busy_bytes = self.busy(), 0
        for camera_dir in (p for p in self.out_dir.iterdir() if p.is_dir()):
            for path in camera_dir.iterdir():
                match = _SEGMENT_FILE.match(path.name)
                if match and path.is_file():
                    if camera_dir / match[1] in busy:
                        busy_bytes += path.stat().st_size
                    else:
                        groups.setdefault(camera_dir / match[1], []).append(path)
            alerts = camera_dir / "alerts"
            if alerts.is_dir():
                for path in alerts.glob("*.jpg"):
                    groups[path] = [path]
        stats = []
        for files in groups.values():
            sizes = [(f.stat().st_mtime, f.stat().st_size) for f in files if f.exists()]
            if sizes:
                stats.append((max(m for m, _ in sizes), sum(s for _, s in sizes), files))
        return sorted(stats, key=lambda g: g[0]), busy_bytes

    def enforce(self, *_: Any) -> list[str]:
        """Delete what is over the limits now; the names deleted."""
        if self.hours is None and self.gb is None:
            return []
        deleted = []
        with self._lock:
            groups, busy_bytes = self._groups()
            total = busy_bytes + sum(size for _, size, _ in groups)
            oldest_kept = time.time() - self.hours * 3600 if self.hours is not None else None
            for mtime, size, files in groups:
                too_old = oldest_kept is not None and mtime < oldest_kept
                too_big = self.gb is not None and total > self.gb * 1e9
                if not (too_old or too_big):
                    break
                for f in files:
                    f.unlink(missing_ok=True)
                    deleted.append(str(f.relative_to(self.out_dir)))
                total -= size
            self.deleted += deleted
        if deleted:
            logger.info("retention: deleted %d file(s), oldest first (%s)", len(deleted), ", ".join(deleted[:4]))
        return deleted


@dataclass
class WatchHandle:
    """Given to ``watch(on_ready=...)`` once every camera started: their live states, the dashboard (or None),
    and :meth:`stop`, which ends the watch as Ctrl-C does."""

    cameras: dict[str, Any]
    server: Any
    stop_event: threading.Event

    def stop(self) -> None:
        self.stop_event.set()


def check_site_outputs(cameras: Sequence[CameraConfig], out_dir: Path) -> None:
    """Refuse an output folder that is or holds a camera's video file, or lies inside its folder."""
    from maskdetect.guard import check_paths

    files = {f"camera {c.name}": c.source for c in cameras if Path(c.source).is_file()}
    check_paths(files, {"--out": out_dir}, folders=("--out",))


def watch(cameras: Sequence[CameraConfig], out_dir: str | Path, *, predictor: Any = None, model: str | None = None,
          segment_minutes: float = 10.0, retention_hours: float | None = None, retention_gb: float | None = None,
          detect_every: int = 1, privacy: str = "off", record: bool = True, dashboard: str | None = None,
          token: str | None = None, duration_s: float | None = None, read_timeout_s: float = 5.0,
          on_ready: Callable[[WatchHandle], None] | None = None) -> dict[str, Any]:
    """Watch every camera until `duration_s` passes, every camera has ended (files), or Ctrl-C.

    Args:
        cameras: the site's cameras (:func:`~maskdetect.site.config.load_site`).
        out_dir: where the segments, events, snapshots and summaries go (see the module docstring).
        predictor: a loaded model shared by every camera (default: ``Predictor(model)``, the bundled one).
        segment_minutes: length of a recording segment (a drop also starts a new one).
        retention_hours, retention_gb: delete the oldest segments and snapshots beyond these limits.
        detect_every: run the detector on every K-th frame; the boxes are carried between.
        privacy: ``"blur"`` blurs faces in recordings, snapshots and the dashboard, and keeps only boxes and
            classes in the detection records.
        record: write the H.264 segments.
        dashboard: ``[HOST:]PORT`` to serve the live dashboard on (:mod:`maskdetect.site.dashboard`).
        token: the dashboard's access token (see :func:`maskdetect.site.dashboard.resolve_token`).
        on_ready: called with a :class:`WatchHandle` once every camera thread started.

    Returns:
        ``{"cameras": {name: {"frames", "reconnects", "segments", "status", "summary"}}, "deleted": [...]}``.
    """
    if privacy not in PRIVACY_MODES:
        raise ConfigError(f"--privacy {privacy!r}: choose from {', '.join(PRIVACY_MODES)}")
    if segment_minutes <= 0:
        raise ConfigError(f"--segment-minutes {segment_minutes}: must be positive")
    if detect_every < 1:
        raise ConfigError(f"--detect-every {detect_every}: must be at least 1")
    out_dir = Path(out_dir)
    check_site_outputs(cameras, out_dir)
    server = None
    if dashboard is not None:
        from maskdetect.site.dashboard import parse_bind, resolve_token

        host, port = parse_bind(dashboard)
        token, generated = resolve_token(host, token)
    if predictor is None:
        from maskdetect.infer.predictor import Predictor

        predictor = Predictor(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    runners: list[CameraRunner] = []
    retention = Retention(out_dir, hours=retention_hours, gb=retention_gb,
                          busy=lambda: {r.camera_dir / r.current_stem for r in runners if r.current_stem})
    for camera in cameras:
        monitor = make_monitor(camera, out_dir / camera.name / "events.jsonl", blur_faces=privacy == "blur")
        runners.append(CameraRunner(camera, predictor, out_dir, monitor, stop=stop, segment_s=segment_minutes * 60,
                                    detect_every=detect_every, privacy=privacy, record=record,
                                    live_jpeg=dashboard is not None, on_segment=retention.enforce,
                                    read_timeout_s=read_timeout_s))
    try:
        if dashboard is not None:
            from maskdetect.site.dashboard import Dashboard

            server = Dashboard(runners, out_dir, host=host, port=port, token=token, token_generated=generated).start()
        for runner in runners:
            logger.info("camera %s", runner.camera.label)
            runner.start()
        if on_ready is not None:
            on_ready(WatchHandle({r.camera.name: r.state for r in runners}, server, stop))
        started = time.monotonic()
        with stop_signals_as_interrupt():  # SIGTERM / SIGHUP (docker stop, systemctl stop) finish as Ctrl-C does
            while any(r.is_alive() for r in runners) and not stop.is_set():
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
                time.sleep(0.2)
    except KeyboardInterrupt:
        logger.info("interrupted: finishing every camera's segment")
    finally:
        stop.set()
        for runner in runners:
            if runner.ident is not None:  # started: an error before a camera started must not be hidden by join
                runner.join(timeout=60)
        if server is not None:
            server.stop()
    failed = [r for r in runners if r.error is not None]
    result = {"cameras": {r.camera.name: {**{k: v for k, v in r.state.to_dict().items() if k in (
        "status", "frames", "reconnects", "segments", "last_error")}, "summary": r.summary} for r in runners},
              "deleted": retention.deleted}
    if failed and len(failed) == len(runners):
        raise failed[0].error  # type: ignore[misc]
    for runner in failed:
        logger.error("camera %s stopped: %s", runner.camera.name, redact(str(runner.error)))
    return result
