"""Alert hooks: run a command or POST JSON to a URL for each alert event, off the video thread.

A hook that fails (non-zero exit, timeout, connection refused, HTTP error) is logged and counted; it never
raises into the caller. URLs are redacted (credentials and query values) before they reach any log line.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shlex
import subprocess
import threading
from typing import Any, Protocol, Sequence
from urllib.parse import urlsplit

from maskdetect.errors import ConfigError, MaskdetectError
from maskdetect.redact import redact_url, register_url_secrets

logger = logging.getLogger(__name__)

EVENT_ENV = "MASKDETECT_EVENT"
"""Environment variable holding the event JSON for command hooks (it is also on their stdin)."""


class HookError(MaskdetectError):
    """An alert hook failed (the runner logs this; it never reaches the video loop)."""


class Hook(Protocol):
    """Something that delivers one event; raises :class:`HookError` on failure."""

    name: str

    def __call__(self, event: dict[str, Any]) -> None: ...


class CommandHook:
    """Run a command (no shell) with the event JSON on stdin and in ``$MASKDETECT_EVENT``.

    Args:
        command: Argument list, or one string split like a POSIX shell would (``shlex.split``).
        timeout_s: Kill the command after this long.
    """

    def __init__(self, command: str | Sequence[str], timeout_s: float = 10.0) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not self.argv:
            raise ConfigError("--alert-command is empty")
        self.timeout_s = timeout_s
        self.name = f"command {self.argv[0]!r}"

    def __call__(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        try:
            result = subprocess.run(self.argv, input=payload, text=True, capture_output=True,
                                    timeout=self.timeout_s, env={**os.environ, EVENT_ENV: payload}, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HookError(f"{self.name} timed out after {self.timeout_s:g} s") from exc
        except OSError as exc:
            raise HookError(f"{self.name} could not start: {exc.strerror or exc}") from exc
        if result.returncode != 0:
            tail = (result.stderr or "").strip()[-300:]
            raise HookError(f"{self.name} exited with status {result.returncode}: {tail}")


class UrlHook:
    """POST the event as JSON to a URL (``http`` or ``https``).

    Args:
        url: Target; may hold credentials (they are sent, never logged).
        timeout_s: Connect and read timeout.
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        register_url_secrets(url, webhook=True)  # its path is its key (Slack, Discord, Teams)
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"--alert-url must be an http(s) URL, got {redact_url(url, webhook=True)}")
        self.url = url
        self.timeout_s = timeout_s
        self.name = f"POST {redact_url(url, webhook=True)}"

    def __call__(self, event: dict[str, Any]) -> None:
        import requests

        try:
            response = requests.post(self.url, json=event, timeout=self.timeout_s)
        except requests.RequestException as exc:
            # requests' messages repeat the URL (with its query): log only the kind of failure
            raise HookError(f"{self.name} failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise HookError(f"{self.name} answered HTTP {response.status_code}")


class HookRunner:
    """Delivers events to hooks in one background thread, in order, never blocking the caller.

    Args:
        hooks: The hooks to call for every event.
        max_pending: Events waiting beyond this are dropped (with a warning) rather than piling up.

    Example:
        >>> runner = HookRunner([])
        >>> runner.submit({"event": "alert_raised"})
        >>> runner.close()
        {'delivered': 0, 'failed': 0, 'dropped': 0}
    """

    def __init__(self, hooks: Sequence[Hook], *, max_pending: int = 100) -> None:
        self.hooks = list(hooks)
        self.stats = {"delivered": 0, "failed": 0, "dropped": 0}
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, event: dict[str, Any]) -> None:
        """Queue `event` for every hook; returns at once."""
        if not self.hooks or self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="maskdetect-alert-hooks", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.stats["dropped"] += len(self.hooks)
            logger.warning("alert hooks are behind: dropped event %s", event.get("event"))

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            for hook in self.hooks:
                try:
                    hook(event)
                except HookError as exc:
                    self.stats["failed"] += 1
                    logger.warning("alert hook failed (video goes on): %s", exc)
                except Exception as exc:  # a hook must never take the runner down
                    self.stats["failed"] += 1
                    logger.warning("alert hook %s raised %s", getattr(hook, "name", hook), type(exc).__name__)
                else:
                    self.stats["delivered"] += 1
                    logger.debug("alert hook %s delivered %s", hook.name, event.get("event"))

    def close(self, wait_s: float = 30.0) -> dict[str, int]:
        """Deliver what is queued (waiting at most `wait_s`), stop the thread, and return the counts."""
        if not self._closed:
            self._closed = True
            if self._thread is not None:
                try:
                    self._queue.put(None, timeout=wait_s)
                except queue.Full:
                    logger.warning("alert hooks still busy after %.0f s; not waiting for them", wait_s)
                    return dict(self.stats)
                self._thread.join(wait_s)
                if self._thread.is_alive():
                    logger.warning("alert hooks still running after %.0f s; not waiting for them", wait_s)
        return dict(self.stats)
