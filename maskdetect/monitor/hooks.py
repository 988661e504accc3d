"""Alert hooks: run a command, POST to a URL (raw JSON or a chat webhook's shape) or send an e-mail for each
alert event, off the video thread.

Each hook has its own worker thread, bounded queue and deadline (:class:`HookRunner`): a slow or dead webhook
delays only itself, never the command or the e-mail. A hook that fails (non-zero exit, timeout, connection
refused, HTTP or SMTP error) is logged and counted; one that is behind drops events, counted too. Nothing
raises into the caller.

A snapshot of the frame that raised an alert (JPEG bytes, made and, if the run asks for privacy, blurred by the
caller: :mod:`maskdetect.monitor.snapshot`) goes where the service takes a file: attached to the e-mail, posted
as a file to Discord (multipart) and to ntfy (the body of a PUT with a ``Filename`` header). Slack's incoming
webhooks take only an image *URL*, and a Teams Workflows card an image URL within a ~28 KB message, so the
snapshot is not posted to them (nor with the raw ``json`` format or to a command).

Secrets: webhook URLs are registered and redacted (credentials, query values, path segments that look like
keys) before they reach any log line, exception or summary; the mail server's password comes from the
environment and is never shown, not even when its URL is malformed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import math
import os
import re
import shlex
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import deque
from email.message import EmailMessage
from typing import Any, Protocol, Sequence
from urllib.parse import unquote, urlsplit

from maskdetect.errors import ConfigError, MaskdetectError
from maskdetect.redact import redact, redact_url, register_secret, register_url_secrets

logger = logging.getLogger(__name__)

EVENT_ENV = "MASKDETECT_EVENT"
"""Environment variable holding the event JSON for command hooks (it is also on their stdin)."""
SMTP_ENV = "MASKDETECT_SMTP_URL"
"""Environment variable naming the mail server of e-mail alerts: ``smtp://USER:PASSWORD@HOST:587`` (STARTTLS)
or ``smtps://USER:PASSWORD@HOST:465`` (TLS)."""
#: ``--alert-format``: the body a URL hook posts. ``json``: the event itself; ``slack``: ``{"text": message}``;
#: ``teams``: a Teams Workflows message holding an Adaptive Card; ``teams-legacy``: the retired Office 365
#: connector's ``{"text": message}``; ``discord``: ``{"content": message}`` (multipart with the snapshot);
#: ``ntfy``: the message as plain text (or the snapshot as the body, the message in a header).
WEBHOOK_SHAPES = ("json", "slack", "teams", "teams-legacy", "discord", "ntfy")
#: The shapes whose service takes the snapshot as a file.
SNAPSHOT_SHAPES = frozenset({"discord", "ntfy"})
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
#: A call may take its hook's ``timeout_s`` plus this (a command's kill, a connect then a read) before the runner
#: counts it failed and moves on to the next event.
DEADLINE_GRACE_S = 1.0
#: Calls past their deadline still running (a server trickling its answer) beyond which a hook's next events
#: fail at once instead of starting more threads.
MAX_STUCK_CALLS = 4

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_ADDRESS = re.compile(r"[^\s@<>,;:\"()\[\]\\]+@[^\s@<>,;:\"()\[\]\\]+")


def one_line(text: object) -> str:
    """`text` with every run of control characters (newlines, tabs, escapes) replaced by one space: safe in a
    mail or HTTP header and in a log line.

    Example:
        >>> one_line("door\\r\\nBcc: someone@example.com")
        'door Bcc: someone@example.com'
    """
    return _CONTROL.sub(" ", str(text)).strip()


def check_timeout(seconds: float, option: str = "--hook-timeout") -> float:
    """`seconds` as a float if it is a finite number above 0, else a :class:`ConfigError` naming `option`."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ConfigError(f"{option} must be a number of seconds above 0, got {seconds!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a finite number of seconds above 0 (e.g. 10), got {seconds!r}")
    return value


def alert_message(event: dict[str, Any]) -> str:
    """One line for people about an alert event (chat messages, e-mail subjects); control characters in the
    source's name become spaces.

    Example:
        >>> alert_message({"event": "alert_raised", "compliance": 0.5, "threshold": 0.75, "people_in_view": 4,
        ...                "timestamp_s": 12.0, "source": "door"})
        'maskdetect alert on door: 50% of 4 people wear a mask correctly (below 75%) at 12.0 s'
    """
    where = f" on {one_line(event['source'])}" if event.get("source") else ""
    share = f"{100 * float(event.get('compliance') or 0):.0f}%"
    at = f"at {float(event.get('timestamp_s') or 0):.1f} s"
    if event.get("event") == "alert_cleared":
        return f"maskdetect{where}: alert cleared, {share} wear a mask correctly {at}"
    return one_line(f"maskdetect alert{where}: {share} of {event.get('people_in_view', '?')} people wear a mask "
                    f"correctly (below {100 * float(event.get('threshold') or 0):.0f}%) {at}")


def snapshot_name(event: dict[str, Any]) -> str:
    """File name of an event's snapshot, made only of the event's numbers: ``alert-3-frame-120.jpg``."""
    def number(key: str) -> str:
        return re.sub(r"[^0-9]", "", str(event.get(key, ""))) or "0"
    return f"alert-{number('alert_id')}-frame-{number('frame_index')}.jpg"


def _check_jpeg(snapshot_jpeg: bytes | None) -> bytes | None:
    if snapshot_jpeg is None:
        return None
    if not isinstance(snapshot_jpeg, (bytes, bytearray)) or not bytes(snapshot_jpeg[:3]) == b"\xff\xd8\xff":
        raise TypeError("snapshot_jpeg must be the bytes of a JPEG image (maskdetect.monitor.snapshot)")
    return bytes(snapshot_jpeg)


class HookError(MaskdetectError):
    """An alert hook failed (the runner logs this; it never reaches the video loop)."""


class Hook(Protocol):
    """Something that delivers one event; raises :class:`HookError` on failure.

    ``takes_snapshot``: the hook is called as ``hook(event, snapshot_jpeg)`` (bytes or None); else as
    ``hook(event)``.
    """

    name: str
    takes_snapshot: bool

    def __call__(self, event: dict[str, Any], snapshot_jpeg: bytes | None = None) -> None: ...


class CommandHook:
    """Run a command (no shell) with the event JSON on stdin and in ``$MASKDETECT_EVENT``.

    The hook waits for the command's own exit, not for its output pipes: a command that starts a background
    process (a sound player, ``notify-send``) and exits 0 has succeeded, however long the process it left
    lives. stdin and stderr are temporary files and stdout goes to ``/dev/null``, so nothing a grandchild holds
    open can block the hook. On timeout the command's whole process group is killed.

    Args:
        command: Argument list, or one string split like a POSIX shell would (``shlex.split``).
        timeout_s: Kill the command after this long (finite, above 0).
    """

    takes_snapshot = False

    def __init__(self, command: str | Sequence[str], timeout_s: float = 10.0) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not self.argv:
            raise ConfigError("--alert-command is empty")
        self.timeout_s = check_timeout(timeout_s)
        self.name = f"command {one_line(self.argv[0])!r}"

    def __call__(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
            stdin.write(payload.encode("utf-8"))
            stdin.seek(0)
            try:
                process = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr,
                                           env={**os.environ, EVENT_ENV: payload}, start_new_session=True)
            except OSError as exc:
                raise HookError(f"{self.name} could not start: {exc.strerror or type(exc).__name__}") from None
            try:
                status = process.wait(self.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise HookError(f"{self.name} timed out after {self.timeout_s:g} s") from None
            if status != 0:
                stderr.seek(0)
                tail = one_line(stderr.read()[-300:].decode("utf-8", "replace"))
                raise HookError(f"{self.name} exited with status {status}: {tail}")


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the command and what it started
    except OSError:
        process.kill()
    process.wait()


class UrlHook:
    """POST each event to a URL (``http`` or ``https``): the event as JSON, or shaped for a chat webhook.

    Payloads, with ``message`` = :func:`alert_message`:

    * ``json``: the event; ``slack`` and ``teams-legacy``: ``{"text": message}``;
    * ``teams`` (Teams Workflows, "Post to a channel when a webhook request is received"):
      ``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
      "contentUrl": None, "content": {"type": "AdaptiveCard", "version": "1.4", "body": [...]}}]}`` with the
      message as a TextBlock and the event's figures as a FactSet;
    * ``discord``: ``{"content": message}``; with a snapshot, multipart: ``payload_json`` (the same, plus
      ``attachments: [{"id": 0, "filename": ...}]``) and the JPEG as ``files[0]``;
    * ``ntfy``: the message as a plain-text body with ``Title`` and ``Tags`` headers; with a snapshot, a PUT
      whose body is the JPEG, named by a ``Filename`` header, the message in a ``Message`` header.

    Slack's incoming webhooks take only an image URL and a Teams card an image URL, so the snapshot is not
    posted to Slack or Teams.

    Args:
        url: Target; may hold credentials (they are sent, never logged).
        timeout_s: Deadline for connecting and for each wait on the server (finite, above 0).
        shape: one of :data:`WEBHOOK_SHAPES`.
    """

    def __init__(self, url: str, timeout_s: float = 5.0, shape: str = "json") -> None:
        register_url_secrets(url, webhook=True)  # its path is its key (Slack, Discord, Teams)
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"--alert-url must be an http(s) URL, got {redact_url(url, webhook=True)}")
        if shape not in WEBHOOK_SHAPES:
            raise ConfigError(f"--alert-format {shape!r}: choose one of {', '.join(WEBHOOK_SHAPES)}")
        self.url = url
        self.timeout_s = check_timeout(timeout_s)
        self.shape = shape
        self.takes_snapshot = shape in SNAPSHOT_SHAPES
        self.name = f"POST {redact_url(url, webhook=True)}" + ("" if shape == "json" else f" ({shape})")

    def __repr__(self) -> str:
        return f"UrlHook({self.name!r})"

    def request(self, event: dict[str, Any], snapshot_jpeg: bytes | None = None) -> dict[str, Any]:
        """The keyword arguments of ``requests.request`` that deliver `event` (method, body, headers)."""
        message = alert_message(event)
        snapshot_jpeg = _check_jpeg(snapshot_jpeg) if self.takes_snapshot else None
        if self.shape == "ntfy":
            headers = {"Title": "maskdetect",
                       "Tags": "warning" if event.get("event") == "alert_raised" else "white_check_mark"}
            if snapshot_jpeg is None:
                return {"method": "POST", "data": message.encode("utf-8"), "headers": headers}
            return {"method": "PUT", "data": snapshot_jpeg,
                    "headers": {**headers, "Filename": snapshot_name(event), "Message": _ascii_header(message)}}
        if self.shape == "discord" and snapshot_jpeg is not None:
            name = snapshot_name(event)
            payload = {"content": message, "attachments": [{"id": 0, "filename": name}]}
            return {"method": "POST", "data": {"payload_json": json.dumps(payload)},
                    "files": {"files[0]": (name, snapshot_jpeg, "image/jpeg")}}
        body = {"json": event, "slack": {"text": message}, "teams-legacy": {"text": message},
                "discord": {"content": message}}.get(self.shape) or _teams_card(event, message)
        return {"method": "POST", "json": body}

    def __call__(self, event: dict[str, Any], snapshot_jpeg: bytes | None = None) -> None:
        import requests

        try:
            response = requests.request(url=self.url, timeout=self.timeout_s, allow_redirects=False,
                                        **self.request(event, snapshot_jpeg))
        except requests.Timeout:
            raise HookError(f"{self.name} timed out after {self.timeout_s:g} s") from None
        except requests.RequestException as exc:
            # requests' messages repeat the URL (with its query): log only the kind of failure
            raise HookError(f"{self.name} failed: {type(exc).__name__}") from None
        if response.status_code >= 300:
            redirect = " (a redirect: give the URL it points to)" if response.status_code < 400 else ""
            raise HookError(f"{self.name} answered HTTP {response.status_code}{redirect}")


def _ascii_header(text: str) -> str:
    """`text` as an HTTP header value: as it is if ASCII, else RFC 2047 encoded (ntfy decodes it)."""
    return text if text.isascii() else f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _teams_card(event: dict[str, Any], message: str) -> dict[str, Any]:
    raised = event.get("event") == "alert_raised"
    facts = [("Source", event.get("source")), ("Event", event.get("event")),
             ("Compliance", f"{100 * float(event.get('compliance') or 0):.0f}%"),
             ("People in view", event.get("people_in_view")),
             ("Threshold", None if event.get("threshold") is None else f"{100 * float(event['threshold']):.0f}%"),
             ("Time", f"{float(event.get('timestamp_s') or 0):.1f} s"), ("Frame", event.get("frame_index"))]
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": "Mask compliance alert" if raised else "Alert cleared",
                      "weight": "Bolder", "size": "Medium", "color": "Attention" if raised else "Good"},
                     {"type": "TextBlock", "text": message, "wrap": True},
                     {"type": "FactSet", "facts": [{"title": title, "value": one_line(value)}
                                                   for title, value in facts if value is not None]}]}
    return {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}]}


class EmailHook:
    """Send each event as an e-mail through the SMTP server named in ``$MASKDETECT_SMTP_URL``, with the
    snapshot of the frame that raised the alert attached when there is one.

    ``smtp://`` upgrades to TLS with STARTTLS when the server offers it and refuses to send a password in clear
    to any server but a loopback one; ``smtps://`` is TLS from the start. The subject is one line: control
    characters in a video's name cannot add or break a header.

    Args:
        to: recipients.
        smtp_url: the server (default: ``$MASKDETECT_SMTP_URL``); its password is registered as a secret.
        sender: the From address (default: the server's user name if it is an address, else maskdetect@HOST).
        timeout_s: Deadline for connecting and for each wait on the server (finite, above 0).
    """

    takes_snapshot = True

    def __init__(self, to: Sequence[str], smtp_url: str | None = None, *, sender: str | None = None,
                 timeout_s: float = 10.0) -> None:
        smtp_url = smtp_url or os.environ.get(SMTP_ENV)
        if not smtp_url:
            raise ConfigError(f"--alert-email needs the mail server in ${SMTP_ENV}, e.g. "
                              "smtp://you%40gmail.com:APP-PASSWORD@smtp.gmail.com:587")
        register_url_secrets(smtp_url)
        expected = (f"${SMTP_ENV} must be smtp://USER:PASSWORD@HOST:PORT (STARTTLS) or smtps://... (TLS) "
                    "(its value is not shown: it holds a password)")
        try:
            parts = urlsplit(smtp_url)
            port = parts.port
        except ValueError:
            port = -1
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(f"{expected}; its port is not a number from 1 to 65535")
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(expected)
        self.user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        register_secret(self._password)
        if self.user is not None and _CONTROL.search(self.user):
            raise ConfigError(f"{expected}; its user name holds a control character")
        self.host, self.tls = parts.hostname, parts.scheme == "smtps"
        self.port = port or (465 if self.tls else 587)
        self.to = [_check_address(address, "--alert-email") for address in to]
        if not self.to:
            raise ConfigError("--alert-email: give at least one recipient address")
        self.sender = _check_address(
            sender or (self.user if self.user and "@" in self.user else f"maskdetect@{socket.gethostname()}"),
            "the sender")
        self.timeout_s = check_timeout(timeout_s)
        self.name = f"e-mail to {', '.join(self.to)} via {self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"EmailHook({self.name!r})"

    def message(self, event: dict[str, Any], snapshot_jpeg: bytes | None = None) -> EmailMessage:
        """The e-mail for `event`: the alert line as subject, the event's JSON as text, the snapshot attached."""
        message = EmailMessage()
        message["Subject"] = alert_message(event)
        message["From"], message["To"] = self.sender, ", ".join(self.to)
        message.set_content(alert_message(event) + "\n\n" + json.dumps(event, indent=2) + "\n")
        snapshot_jpeg = _check_jpeg(snapshot_jpeg)
        if snapshot_jpeg is not None:
            message.add_attachment(snapshot_jpeg, maintype="image", subtype="jpeg", filename=snapshot_name(event))
        return message

    def __call__(self, event: dict[str, Any], snapshot_jpeg: bytes | None = None) -> None:
        message = self.message(event, snapshot_jpeg)
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
        except (socket.timeout, TimeoutError):
            raise HookError(f"{self.name} timed out after {self.timeout_s:g} s") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise HookError(f"{self.name} failed: {type(exc).__name__}") from None


def _check_address(address: str, what: str) -> str:
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise ConfigError(f"{what}: {one_line(address)!r} is not one e-mail address (NAME@DOMAIN, no spaces, "
                          "commas or control characters)")
    return address


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


class _Lane:
    """One hook's worker thread, its bounded queue of pending events and its counts."""

    def __init__(self, hook: Hook, max_pending: int) -> None:
        self.hook = hook
        self.name = redact(one_line(getattr(hook, "name", type(hook).__name__)))
        self.max_pending = max_pending
        self.counts = {"delivered": 0, "failed": 0, "dropped": 0}
        self._pending: deque[tuple[dict[str, Any], bytes | None]] = deque()
        self._busy = False
        self._closing = self._abandoned = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        timeout_s = getattr(hook, "timeout_s", None)
        self.deadline_s = None if timeout_s is None else float(timeout_s) + DEADLINE_GRACE_S
        self._stuck: list[threading.Thread] = []

    def put(self, event: dict[str, Any], snapshot_jpeg: bytes | None) -> None:
        with self._cond:
            if self._closing:
                return
            if len(self._pending) >= self.max_pending:
                self.counts["dropped"] += 1
                if self.counts["dropped"] == 1 or self.counts["dropped"] % 100 == 0:
                    logger.warning("alert hook %s is behind: dropped event %s (%d dropped so far)", self.name,
                                   event.get("event"), self.counts["dropped"])
                return
            self._pending.append((event, snapshot_jpeg))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"maskdetect-hook-{self.name[:40]}",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                event, snapshot_jpeg = self._pending.popleft()
                self._busy = True
            outcome = self._deliver(event, snapshot_jpeg)
            with self._cond:
                self._busy = False
                if not self._abandoned:
                    self.counts[outcome] += 1
                self._cond.notify_all()

    def _deliver(self, event: dict[str, Any], snapshot_jpeg: bytes | None) -> str:
        """Call the hook in a thread of its own and wait at most its deadline: a server that trickles its answer
        a byte at a time (each wait within the socket timeout) cannot hold the lane longer than that."""
        if self.deadline_s is None:
            return self._call(event, snapshot_jpeg)
        self._stuck = [call for call in self._stuck if call.is_alive()]
        if len(self._stuck) >= MAX_STUCK_CALLS:
            logger.warning("alert hook failed (video goes on): %s: %d earlier calls are still stuck", self.name,
                           len(self._stuck))
            return "failed"
        outcome: list[str] = []
        call = threading.Thread(target=lambda: outcome.append(self._call(event, snapshot_jpeg)), daemon=True,
                                name=f"maskdetect-hook-call-{self.name[:40]}")
        call.start()
        call.join(self.deadline_s)
        if call.is_alive():
            self._stuck.append(call)
            logger.warning("alert hook failed (video goes on): %s passed its deadline of %g s", self.name,
                           self.deadline_s)
            return "failed"
        return outcome[0] if outcome else "failed"

    def _call(self, event: dict[str, Any], snapshot_jpeg: bytes | None) -> str:
        try:
            if getattr(self.hook, "takes_snapshot", False):
                self.hook(event, snapshot_jpeg)
            else:
                self.hook(event)
        except HookError as exc:
            logger.warning("alert hook failed (video goes on): %s", one_line(exc))
            return "failed"
        except Exception as exc:  # a hook must never take its worker down
            logger.warning("alert hook %s raised %s", self.name, type(exc).__name__)
            return "failed"
        logger.debug("alert hook %s delivered %s", self.name, event.get("event"))
        return "delivered"

    def finish(self, deadline: float) -> None:
        """Deliver what is queued until the monotonic `deadline`; then count what is left as dropped."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._pending or self._busy) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            left_over = len(self._pending) + self._busy
            if left_over:
                self._abandoned = True
                self.counts["dropped"] += left_over
                self._pending.clear()
                logger.warning("alert hook %s still busy when the run ended: %d event(s) not delivered", self.name,
                               left_over)

    def report(self) -> dict[str, Any]:
        with self._cond:
            return {"hook": self.name, **self.counts}


class HookRunner:
    """Delivers events to hooks, each in its own background thread, in order, never blocking the caller.

    Each hook has its own queue of at most `max_pending` waiting events (more are dropped and counted) and its
    own deadline per call (its ``timeout_s`` + :data:`DEADLINE_GRACE_S`; none for a hook without ``timeout_s``),
    so a hook that hangs delays only itself, and only by its deadline per event.

    Args:
        hooks: The hooks to call for every event.
        max_pending: Per hook, events waiting beyond this are dropped (with a warning) rather than piling up.

    Example:
        >>> runner = HookRunner([])
        >>> runner.submit({"event": "alert_raised"})
        >>> runner.close()
        {'delivered': 0, 'failed': 0, 'dropped': 0, 'per_hook': []}
    """

    def __init__(self, hooks: Sequence[Hook], *, max_pending: int = 100) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError(f"max_pending must be a whole number of at least 1, got {max_pending!r}")
        self.hooks = list(hooks)
        self._lanes = [_Lane(hook, max_pending) for hook in self.hooks]
        self._closed = False

    @property
    def wants_snapshot(self) -> bool:
        """True if a hook takes the alert's snapshot (only then is one worth making)."""
        return any(getattr(hook, "takes_snapshot", False) for hook in self.hooks)

    def snapshot(self, frame_rgb: Any, boxes_xyxy: Any = None, *, blur_faces: bool = False) -> bytes | None:
        """The JPEG of the frame that raised an alert (faces at `boxes_xyxy` pixelated if `blur_faces`), or None
        when no hook takes one, there is no frame, or it cannot be encoded (logged: the video goes on)."""
        if frame_rgb is None or not self.wants_snapshot or self._closed:
            return None
        from maskdetect.monitor.snapshot import alert_snapshot

        try:
            return alert_snapshot(frame_rgb, boxes_xyxy, blur_faces=blur_faces)
        except Exception as exc:  # a snapshot must never stop the video
            logger.warning("no snapshot for the alert hooks: %s", one_line(exc))
            return None

    def submit(self, event: dict[str, Any], snapshot_jpeg: bytes | None = None) -> None:
        """Queue `event` (and the JPEG of the frame that raised it, for the hooks that take one) for every hook;
        returns at once."""
        if self._closed:
            return
        snapshot_jpeg = _check_jpeg(snapshot_jpeg)
        for lane in self._lanes:
            lane.put(event, snapshot_jpeg)

    def counts(self) -> dict[str, Any]:
        """Delivered, failed and dropped (queue full, or still waiting when the run ended) events, in total and
        per hook (``per_hook``: ``{"hook": redacted name, "delivered", "failed", "dropped"}``), for the summary.
        Per hook, delivered + failed + dropped = events submitted once the runner is closed."""
        per_hook = [lane.report() for lane in self._lanes]
        totals = {key: sum(h[key] for h in per_hook) for key in ("delivered", "failed", "dropped")}
        return {**totals, "per_hook": per_hook}

    def close(self, wait_s: float = 30.0) -> dict[str, Any]:
        """Deliver what is queued (all hooks together waiting at most `wait_s`), stop, and return
        :meth:`counts`."""
        if not self._closed:
            self._closed = True
            deadline = time.monotonic() + max(0.0, float(wait_s) if math.isfinite(wait_s) else 0.0)
            for lane in self._lanes:
                lane.finish(deadline)
        return self.counts()
