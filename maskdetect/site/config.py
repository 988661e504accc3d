"""The site file of ``maskdetect watch``: cameras, their sources, zones, thresholds and hooks.

A site is a YAML file::

    defaults:                      # optional: every camera's settings unless it sets its own
      alert_threshold: 0.75
      alert_seconds: 3
    cameras:
      - name: entrance
        source: rtsp://viewer:${ENTRANCE_PASSWORD}@10.0.0.5/stream1
        threshold: 0.5             # detector score
        zones:
          - name: door
            polygon: [[0, 0], [640, 0], [640, 360], [0, 360]]
        hooks:
          - url: ${SLACK_WEBHOOK}
            format: slack

Secrets never sit in the file: ``${NAME}`` is replaced by the environment variable ``NAME`` (a missing one is
an error naming the file and the variable), and every value so read is registered with
:mod:`maskdetect.redact`, so it never reaches a log line, an event, the dashboard or an exception.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from maskdetect.errors import ConfigError
from maskdetect.redact import redact, register_secret, register_url_secrets

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HOOK_KINDS = ("url", "command", "email")


@dataclass(frozen=True)
class Zone:
    """A polygon in frame pixels; a person (the centre of their face box) inside it is counted in it."""

    name: str
    polygon: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class CameraConfig:
    """One camera of the site.

    Attributes:
        name: folder and dashboard name (letters, digits, ``_.-``).
        source: stream URL, webcam index or video file (may hold secrets: only ever shown redacted).
        zones: counting polygons.
        threshold: minimum detector score for this camera (None: the model's).
        alert_threshold, alert_seconds, alert_margin, alert_cooldown_s: the compliance alert rule
            (:class:`maskdetect.monitor.compliance.AlertSettings`; None: the monitor's defaults).
        hooks: ``{"url": ..., "format": ...}``, ``{"command": ...}`` or ``{"email": [...]}`` per alert target.
    """

    name: str
    source: str
    zones: tuple[Zone, ...] = ()
    threshold: float | None = None
    alert_threshold: float | None = None
    alert_seconds: float | None = None
    alert_margin: float | None = None
    alert_cooldown_s: float | None = None
    hooks: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def label(self) -> str:
        """The camera for messages: its name and its source, redacted."""
        return f"{self.name} ({redact(self.source)})"


_CAMERA_KEYS = {f.name for f in fields(CameraConfig)} | {"alert_cooldown"}


def expand_env(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    """`value` with every ``${NAME}`` in its strings replaced by ``environ[NAME]``, each such value registered
    as a secret. Raises ConfigError naming `where` and the variable if one is unset."""
    if isinstance(value, dict):
        return {k: expand_env(v, where, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, where, environ) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        name = match[1]
        if name not in environ:
            raise ConfigError(f"{where}: the environment variable {name} is not set; export it before running "
                              f"(secrets are read from the environment, never written in the site file)")
        register_secret(environ[name])
        return environ[name]

    expanded = _ENV.sub(replace, value)
    if expanded != value and "://" in expanded:
        register_url_secrets(expanded)
    return expanded


def _number(value: Any, key: str, where: str, low: float = 0.0, high: float | None = None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key}={value!r} is not a number") from None
    if number < low or (high is not None and number > high):
        raise ConfigError(f"{where}: {key}={number:g} must be in [{low:g}, {'inf' if high is None else high:g}]")
    return number


def _zones(items: Any, where: str) -> tuple[Zone, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError(f"{where}: zones must be a list of {{name, polygon}}")
    zones, names = [], set()
    for i, item in enumerate(items):
        at = f"{where}: zone {i + 1}"
        if not isinstance(item, dict) or "polygon" not in item:
            raise ConfigError(f"{at}: expected {{name: ..., polygon: [[x, y], [x, y], [x, y], ...]}}")
        name = str(item.get("name", f"zone{i + 1}"))
        if name in names:
            raise ConfigError(f"{at}: the name {name!r} is used twice")
        names.add(name)
        try:
            points = tuple((float(x), float(y)) for x, y in item["polygon"])
        except (TypeError, ValueError):
            raise ConfigError(f"{at} ({name}): polygon must be a list of [x, y] pixel points") from None
        if len(points) < 3:
            raise ConfigError(f"{at} ({name}): a polygon needs at least 3 points, got {len(points)}")
        zones.append(Zone(name, points))
    return tuple(zones)


def _hooks(items: Any, where: str) -> tuple[dict[str, Any], ...]:
    if items is None:
        return ()
    if isinstance(items, dict):
        items = [items]
    hooks = []
    for item in items:
        if not isinstance(item, dict) or not any(k in item for k in HOOK_KINDS):
            raise ConfigError(f"{where}: each hook is {{url: ..., format: json|slack|teams|discord|ntfy}}, "
                              f"{{command: ...}} or {{email: [ADDRESS, ...]}}")
        hooks.append(dict(item))
    return tuple(hooks)


def camera_from_dict(item: Mapping[str, Any], where: str, defaults: Mapping[str, Any] | None = None) -> CameraConfig:
    """A :class:`CameraConfig` from one (already env-expanded) ``cameras:`` entry over `defaults`."""
    data = {**(defaults or {}), **item}
    unknown = sorted(set(data) - _CAMERA_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; a camera has "
                          f"{', '.join(sorted(_CAMERA_KEYS - {'alert_cooldown'}))}")
    name = str(data.get("name", ""))
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must be 1-64 letters, digits, '_', '.' or '-' (it names a folder)")
    if data.get("source") in (None, ""):
        raise ConfigError(f"{where} ({name}): no source; give a stream URL, a webcam index or a video file")
    at = f"{where} ({name})"
    return CameraConfig(
        name=name, source=str(data["source"]), zones=_zones(data.get("zones"), at),
        threshold=_number(data.get("threshold"), "threshold", at, 0, 1),
        alert_threshold=_number(data.get("alert_threshold"), "alert_threshold", at, 0, 1),
        alert_seconds=_number(data.get("alert_seconds"), "alert_seconds", at),
        alert_margin=_number(data.get("alert_margin"), "alert_margin", at, 0, 1),
        alert_cooldown_s=_number(data.get("alert_cooldown_s", data.get("alert_cooldown")), "alert_cooldown", at),
        hooks=_hooks(data.get("hooks"), at))


def check_names(cameras: Sequence[CameraConfig], where: str) -> list[CameraConfig]:
    """`cameras` as a list; ConfigError if there are none or two share a name."""
    if not cameras:
        raise ConfigError(f"{where}: no cameras; list them under `cameras:` or pass --source")
    seen: set[str] = set()
    for camera in cameras:
        if camera.name in seen:
            raise ConfigError(f"{where}: two cameras are named {camera.name!r}; names must differ (they name folders)")
        seen.add(camera.name)
    return list(cameras)


def load_site(path: str | Path, environ: Mapping[str, str] | None = None) -> list[CameraConfig]:
    """The cameras of the site file `path` (see the module docstring).

    Raises:
        ConfigError: unreadable YAML, an unknown key, a bad value or an unset ``${VARIABLE}``, naming the file.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such site file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("cameras"), list):
        raise ConfigError(f"{path}: expected a mapping with a `cameras:` list")
    unknown = sorted(set(document) - {"cameras", "defaults"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; use `cameras:` and `defaults:`")
    environ = os.environ if environ is None else environ
    document = expand_env(document, str(path), environ)
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: `defaults:` must be a mapping of camera settings")
    cameras = []
    for i, item in enumerate(document["cameras"]):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: camera {i + 1} must be a mapping with name and source")
        cameras.append(camera_from_dict(item, f"{path}: camera {i + 1}", defaults))
    return check_names(cameras, str(path))


def cameras_from_sources(sources: Sequence[str]) -> list[CameraConfig]:
    """One camera per ``--source`` (``NAME=SOURCE`` names it; otherwise ``cam1``, ``cam2``, ...)."""
    cameras = []
    for i, text in enumerate(sources):
        name, sep, source = text.partition("=")
        if not sep or "://" in name or not _NAME.match(name):
            name, source = f"cam{i + 1}", text
        if "://" in source:
            register_url_secrets(source)
        cameras.append(camera_from_dict({"name": name, "source": source}, f"--source {i + 1}"))
    return check_names(cameras, "--source")
