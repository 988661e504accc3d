"""Alert hooks: run a command, POST to a URL (raw JSON or a chat webhook's shape) or send an e-mail for each
alert event, off the video thread.

A hook that fails (non-zero exit, timeout, connection refused, HTTP or SMTP error) is logged and counted; it
never raises into the caller. URLs are redacted (credentials and query values) before they reach any log line;
the mail server's password comes from the environment and is never logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import queue
import shlex
import smtplib
import socket
import ssl
import subprocess
import threading
from email.message import EmailMessage
from typing import Any, Protocol, Sequence
from urllib.parse import urlsplit

from maskdetect.errors import ConfigError, MaskdetectError
from maskdetect.redact import redact_url, register_secret, register_url_secrets

logger = logging.getLogger(__name__)

EVENT_ENV = "MASKDETECT_EVENT"
"""Environment variable holding the event JSON for command hooks (it is also on their stdin)."""
SMTP_ENV = "MASKDETECT_SMTP_URL"
"""Environment variable naming the mail server of e-mail alerts: ``smtp://USER:PASSWORD@HOST:587`` (STARTTLS)
or ``smtps://USER:PASSWORD@HOST:465`` (TLS)."""
#: ``--alert-format``: the body a URL hook posts. ``json``: the event itself; ``slack``/``teams``:
#: ``{"text": message}``; ``discord``: ``{"content": message}``; ``ntfy``: the message as plain text.
WEBHOOK_SHAPES = ("json", "slack", "teams", "discord", "ntfy")


def alert_message(event: dict[str, Any]) -> str:
    """One line for people about an alert event (chat messages, e-mail subjects).

    Example:
        >>> alert_message({"event": "alert_raised", "compliance": 0.5, "threshold": 0.75, "people_in_view": 4,
        ...                "timestamp_s": 12.0, "source": "door"})
        'maskdetect alert on door: 50% of 4 people wear a mask correctly (below 75%) at 12.0 s'
    """
    where = f" on {event['source']}" if event.get("source") else ""
    share = f"{100 * float(event.get('compliance') or 0):.0f}%"
    at = f"at {float(event.get('timestamp_s') or 0):.1f} s"
    if event.get("event") == "alert_cleared":
        return f"maskdetect{where}: alert cleared, {share} wear a mask correctly {at}"
    return (f"maskdetect alert{where}: {share} of {event.get('people_in_view', '?')} people wear a mask correctly "
            f"(below {100 * float(event.get('threshold') or 0):.0f}%) {at}")


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
    """POST each event to a URL (``http`` or ``https``): the event as JSON, or shaped for a chat webhook.

    Args:
        url: Target; may hold credentials (they are sent, never logged).
        timeout_s: Connect and read timeout.
        shape: one of :data:`WEBHOOK_SHAPES` (Slack, Teams and Discord incoming webhooks, an ntfy topic URL).
    """

    def __init__(self, url: str, timeout_s: float = 5.0, shape: str = "json") -> None:
        register_url_secrets(url, webhook=True)  # its path is its key (Slack, Discord, Teams)
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"--alert-url must be an http(s) URL, got {redact_url(url, webhook=True)}")
        if shape not in WEBHOOK_SHAPES:
            raise ConfigError(f"--alert-format {shape!r}: choose one of {', '.join(WEBHOOK_SHAPES)}")
        self.url = url
        self.timeout_s = timeout_s
        self.shape = shape
        self.name = f"POST {redact_url(url, webhook=True)}" + ("" if shape == "json" else f" ({shape})")

    def _body(self, event: dict[str, Any]) -> dict[str, Any]:
        message = alert_message(event)
        if self.shape == "ntfy":
            return {"data": message.encode("utf-8"),
                    "headers": {"Title": "maskdetect", "Tags": "warning" if event.get("event") == "alert_raised"
                                else "white_check_mark"}}
        payload = {"json": event, "slack": {"text": message}, "teams": {"text": message},
                   "discord": {"content": message}}[self.shape]
        return {"json": payload}

    def __call__(self, event: dict[str, Any]) -> None:
        import requests

        try:
            response = requests.post(self.url, timeout=self.timeout_s, **self._body(event))
        except requests.RequestException as exc:
            # requests' messages repeat the URL (with its query): log only the kind of failure
            raise HookError(f"{self.name} failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise HookError(f"{self.name} answered HTTP {response.status_code}")


class EmailHook:
    """Send each event as an e-mail through the SMTP server named in ``$MASKDETECT_SMTP_URL``.

    ``smtp://`` upgrades to TLS with STARTTLS when the server offers it and refuses to send a password in clear
    to any server but a loopback one; ``smtps://`` is TLS from the start.

    Args:
        to: recipients.
        smtp_url: the server (default: ``$MASKDETECT_SMTP_URL``); its password is registered as a secret.
        sender: the From address (default: the server's user name if it is an address, else maskdetect@HOST).
    """

    def __init__(self, to: Sequence[str], smtp_url: str | None = None, *, sender: str | None = None,
                 timeout_s: float = 10.0) -> None:
        smtp_url = smtp_url or os.environ.get(SMTP_ENV)
        if not smtp_url:
            raise ConfigError(f"--alert-email needs the mail server in ${SMTP_ENV}, e.g. "
                              "smtp://you%40gmail.com:APP-PASSWORD@smtp.gmail.com:587")
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(f"${SMTP_ENV} must be smtp://USER:PASSWORD@HOST:PORT or smtps://..., got "
                              f"{redact_url(smtp_url)}")
        if not to:
            raise ConfigError("--alert-email: give at least one recipient address")
        from urllib.parse import unquote

        self.user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        register_secret(self._password)
        self.host, self.tls = parts.hostname, parts.scheme == "smtps"
        self.port = parts.port or (465 if self.tls else 587)
        self.to = list(to)
        self.sender = sender or (self.user if self.user and "@" in self.user else f"maskdetect@{socket.gethostname()}")
        self.timeout_s = timeout_s
        self.name = f"e-mail to {', '.join(self.to)} via {self.host}:{self.port}"

    def __call__(self, event: dict[str, Any]) -> None:
        message = EmailMessage()
        message["Subject"] = alert_message(event)
        message["From"], message["To"] = self.sender, ", ".join(self.to)
        message.set_content(alert_message(event) + "\n\n" + json.dumps(event, indent=2) + "\n")
        try:
            if self.tls:
                server = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                          context=ssl.create_default_context())
            else:
                server = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with server:
                server.ehlo()
                if not self.tls and server.has_extn("starttls"):
                    server.starttls(context=ssl.create_default_context())
                    server.ehlo()
                elif not self.tls and self.user and not _is_loopback(self.host):
                    raise HookError(f"{self.name}: the server offers no TLS; not sending the password in clear")
                if self.user:
                    server.login(self.user, self._password or "")
                server.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise HookError(f"{self.name} failed: {type(exc).__name__}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


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
