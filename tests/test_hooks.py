"""Alert hooks against real loopback stand-ins (an HTTP server, an SMTP server, real commands): the payload shapes
of each service, the snapshot where a service takes a file, one queue and deadline per hook, drop counting,
background processes, header injection, and secrets in every output."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import math
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from maskdetect.errors import ConfigError
from maskdetect.monitor.hooks import (ADAPTIVE_CARD, EVENT_ENV, SMTP_ENV, WEBHOOK_SHAPES, CommandHook, EmailHook,
                                     HookError, HookRunner, UrlHook, alert_message, check_timeout)
from maskdetect.monitor.snapshot import PRIVACY_BLOCKS, alert_snapshot, pixelate_faces

EVENT = {"event": "alert_raised", "alert_id": 1, "frame_index": 10, "timestamp_s": 1.0, "compliance": 0.5}
RAISED = {"event": "alert_raised", "alert_id": 1, "frame_index": 300, "timestamp_s": 10.0, "compliance": 0.5,
          "people_in_view": 4, "run_start_s": 8.0, "threshold": 0.75, "source": "door"}
MESSAGE = "maskdetect alert on door: 50% of 4 people wear a mask correctly (below 75%) at 10.0 s"
JPEG = alert_snapshot(np.full((48, 64, 3), (200, 30, 30), np.uint8))


# -- loopback stand-ins -------------------------------------------------------------------------------------
class Recorder(BaseHTTPRequestHandler):
    """Records each POST/PUT (method, path, headers, body; ``json`` decoded when it is JSON) and answers
    ``server.status``; when ``server.hang`` is set, waits for it to be released first (a webhook that sleeps)."""

    def _record(self) -> None:
        self.server.arrived.append(time.monotonic())
        if self.server.hang is not None:
            self.server.hang.wait(30)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers["Content-Type"] or ""
        self.server.received.append({"method": self.command, "path": self.path, "type": kind,
                                     "json": json.loads(body) if "json" in kind else body.decode("latin-1"),
                                     "title": self.headers["Title"], "headers": dict(self.headers), "body": body})
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = _record  # noqa: N815 (http.server's naming)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.received, httpd.arrived, httpd.status, httpd.hang = [], [], 200, None
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    if httpd.hang is not None:
        httpd.hang.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def url_of(httpd: ThreadingHTTPServer, path: str = "/alert") -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}{path}"


class SMTPStandIn(socketserver.StreamRequestHandler):
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive a message on loopback."""

    def handle(self) -> None:
        def reply(line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        reply("220 loopback ESMTP")
        data: list[str] | None = None
        while line := self.rfile.readline():
            text = line.decode().rstrip("\r\n")
            if data is not None:
                if text == ".":
                    self.server.messages.append("\n".join(data))
                    data = None
                    reply("250 queued")
                else:
                    data.append(text[1:] if text.startswith("..") else text)
                continue
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                reply("250-loopback")
                reply("250 AUTH PLAIN")
            elif verb == "AUTH":
                self.server.logins.append(base64.b64decode(text.split()[2]).split(b"\0"))
                reply("235 accepted")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                if verb == "RCPT":
                    self.server.recipients.append(text.split(":", 1)[1].strip())
                reply("250 ok")
            elif verb == "DATA":
                data = []
                reply("354 go on")
            elif verb == "QUIT":
                reply("221 bye")
                return
            else:
                reply("502 not here")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SMTPStandIn)
    server.daemon_threads = True
    server.messages, server.logins, server.recipients = [], [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


# -- command hook -------------------------------------------------------------------------------------------
def test_command_hook_gets_the_event_on_stdin_and_in_the_environment(tmp_path):
    out = tmp_path / "got.json"
    code = (f"import json, os, sys; json.dump({{'stdin': json.load(sys.stdin), "
            f"'env': json.loads(os.environ[{EVENT_ENV!r}])}}, open({str(out)!r}, 'w'))")
    CommandHook(python_command(code))(EVENT)
    got = json.loads(out.read_text())
    assert got == {"stdin": EVENT, "env": EVENT}


def test_command_hook_string_is_split_without_a_shell(tmp_path):
    out = tmp_path / "argv.json"
    code = f"import json, sys; json.dump(sys.argv[1:], open({str(out)!r}, 'w'))"
    CommandHook(f'{sys.executable} -c "{code}" "two words" ; echo $HOME')(EVENT)
    assert json.loads(out.read_text()) == ["two words", ";", "echo", "$HOME"]  # no shell: nothing expanded


@pytest.mark.parametrize(("command", "message"), [
    (python_command("import sys; sys.stderr.write('boom\\nline 2'); sys.exit(3)"), "exited with status 3: boom line 2"),
    (python_command("import time; time.sleep(10)"), "timed out after 0.5 s"),
    (["/nonexistent/maskdetect-hook"], "could not start"),
])
def test_failing_command_hooks_raise_hook_error(command, message):
    with pytest.raises(HookError, match=message):
        CommandHook(command, timeout_s=0.5)(EVENT)


def test_a_command_that_leaves_a_background_process_has_succeeded(tmp_path):
    """The background process holds the command's stdout and stderr open for 30 s: the hook waits for the
    command's own exit (immediate), not for those pipes, and the runner counts it delivered."""
    pid_file = tmp_path / "pid"
    hook = CommandHook(["sh", "-c", f'sleep 30 & echo $! > "{pid_file}"; echo started; echo note >&2'], timeout_s=5)
    runner = HookRunner([hook])
    started = time.monotonic()
    try:
        runner.submit(EVENT)
        counts = runner.close(wait_s=10)
        assert time.monotonic() - started < 3
        assert counts["delivered"] == 1 and counts["failed"] == 0
        assert not process_gone(int(pid_file.read_text()))  # it was left running, as the command meant
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_command_that_times_out_is_killed_with_what_it_started(tmp_path):
    pid_file = tmp_path / "pid"
    hook = CommandHook(["sh", "-c", f'sleep 30 & echo $! > "{pid_file}"; sleep 30'], timeout_s=0.5)
    with pytest.raises(HookError, match="timed out after 0.5 s"):
        hook(EVENT)
    assert wait_for(lambda: process_gone(int(pid_file.read_text())), 5)


def test_empty_command_is_a_config_error():
    with pytest.raises(ConfigError):
        CommandHook("   ")


@pytest.mark.parametrize("timeout", [-1, 0, math.nan, math.inf, "soon", None])
def test_hook_timeouts_must_be_finite_and_positive(timeout, monkeypatch):
    monkeypatch.setenv(SMTP_ENV, "smtp://127.0.0.1:25")
    for make in (lambda: CommandHook("true", timeout_s=timeout), lambda: UrlHook("http://127.0.0.1/x", timeout),
                 lambda: EmailHook(["ops@example.com"], timeout_s=timeout)):
        with pytest.raises(ConfigError, match="--hook-timeout") as info:
            make()
        assert "\n" not in str(info.value)
    assert check_timeout("2.5") == 2.5


# -- URL hook: each service's payload -----------------------------------------------------------------------
def test_url_hook_posts_json(server):
    UrlHook(url_of(server, "/alert?token=s3cret"))(EVENT, JPEG)  # json takes no snapshot
    (got,) = server.received
    assert (got["method"], got["path"], got["type"], got["json"]) == (
        "POST", "/alert?token=s3cret", "application/json", EVENT)


@pytest.mark.parametrize(("shape", "body"), [
    ("slack", {"text": MESSAGE}), ("teams-legacy", {"text": MESSAGE}), ("discord", {"content": MESSAGE}),
    ("ntfy", MESSAGE),
])
def test_url_hook_speaks_the_chat_webhooks_shape(server, shape, body):
    hook = UrlHook(url_of(server, "/services/T000/B000/XXXX"), shape=shape)
    hook(RAISED)
    assert server.received[0]["json"] == body and server.received[0]["method"] == "POST"
    assert (server.received[0]["title"] == "maskdetect") == (shape == "ntfy")
    assert alert_message({**RAISED, "event": "alert_cleared", "compliance": 0.9}) == (
        "maskdetect on door: alert cleared, 90% wear a mask correctly at 10.0 s")
    with pytest.raises(ConfigError, match="alert-format"):
        UrlHook(url_of(server), shape="irc")


def test_teams_posts_a_workflows_adaptive_card(server):
    UrlHook(url_of(server, "/workflows/abc/triggers/manual/paths/invoke?sig=s3cretSig"), shape="teams")(RAISED, JPEG)
    (got,) = server.received
    assert got["type"] == "application/json"
    assert got["json"] == {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": [
                {"type": "TextBlock", "text": "Mask compliance alert", "weight": "Bolder", "size": "Medium",
                 "color": "Attention"},
                {"type": "TextBlock", "text": MESSAGE, "wrap": True},
                {"type": "FactSet", "facts": [
                    {"title": "Source", "value": "door"}, {"title": "Event", "value": "alert_raised"},
                    {"title": "Compliance", "value": "50%"}, {"title": "People in view", "value": "4"},
                    {"title": "Threshold", "value": "75%"}, {"title": "Time", "value": "10.0 s"},
                    {"title": "Frame", "value": "300"}]}]}}]}
    assert ADAPTIVE_CARD == got["json"]["attachments"][0]["contentType"]
    assert "teams" in WEBHOOK_SHAPES and "teams-legacy" in WEBHOOK_SHAPES


def multipart_parts(received: dict) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, bytes) of a multipart/form-data request the stand-in recorded."""
    head = f"Content-Type: {received['type']}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + received["body"])
    assert message.is_multipart()
    return {part.get_param("name", header="content-disposition"):
            (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_parts()}


def test_discord_gets_the_snapshot_as_a_multipart_file(server):
    UrlHook(url_of(server, "/api/webhooks/123/tok"), shape="discord")(RAISED, JPEG)
    (got,) = server.received
    assert got["method"] == "POST" and got["type"].startswith("multipart/form-data; boundary=")
    parts = multipart_parts(got)
    assert set(parts) == {"payload_json", "files[0]"}
    assert json.loads(parts["payload_json"][2]) == {
        "content": MESSAGE, "attachments": [{"id": 0, "filename": "alert-1-frame-300.jpg"}]}
    assert parts["files[0]"] == ("alert-1-frame-300.jpg", "image/jpeg", JPEG)


def test_ntfy_gets_the_snapshot_as_the_body_of_a_put(server):
    UrlHook(url_of(server, "/mytopic"), shape="ntfy")({**RAISED, "source": "entrée"}, JPEG)
    (got,) = server.received
    assert (got["method"], got["path"], got["body"]) == ("PUT", "/mytopic", JPEG)
    headers = got["headers"]
    assert (headers["Filename"], headers["Title"], headers["Tags"]) == ("alert-1-frame-300.jpg", "maskdetect",
                                                                        "warning")
    assert str(email.header.make_header(email.header.decode_header(headers["Message"]))) == MESSAGE.replace(
        "door", "entrée")  # RFC 2047, as ntfy decodes it


def test_slack_takes_no_file_so_only_the_message_is_posted(server):
    UrlHook(url_of(server, "/services/T/B/x"), shape="slack")(RAISED, JPEG)
    assert [(r["method"], r["json"]) for r in server.received] == [("POST", {"text": MESSAGE})]


def test_a_snapshot_must_be_a_jpeg(server):
    with pytest.raises(TypeError, match="JPEG"):
        UrlHook(url_of(server), shape="discord")(RAISED, b"\x89PNG....")
    with pytest.raises(TypeError, match="JPEG"):
        HookRunner([]).submit(RAISED, "not bytes")


def test_url_hook_http_error_is_a_hook_error_without_the_secret(server):
    server.status = 500
    with pytest.raises(HookError, match="HTTP 500") as info:
        UrlHook(url_of(server, "/alert?token=s3cret"))(EVENT)
    assert "s3cret" not in str(info.value)
    server.status = 302
    with pytest.raises(HookError, match="HTTP 302 .a redirect"):
        UrlHook(url_of(server, "/alert?token=s3cret"))(EVENT)


def test_url_hook_connection_refused_is_a_hook_error_without_the_secret():
    with pytest.raises(HookError, match="ConnectionError") as info:
        UrlHook(f"http://user:pw-s3cret@127.0.0.1:{free_port()}/a?token=s3cret", timeout_s=2)(EVENT)
    assert "s3cret" not in str(info.value)


def test_url_hook_rejects_other_schemes():
    with pytest.raises(ConfigError):
        UrlHook("file:///etc/passwd")


# -- e-mail hook --------------------------------------------------------------------------------------------
def test_email_hook_sends_through_the_server_in_the_environment(smtp_server, monkeypatch, caplog):
    port = smtp_server.server_address[1]
    monkeypatch.setenv(SMTP_ENV, f"smtp://alerts%40example.com:App-Passw0rd@127.0.0.1:{port}")
    hook = EmailHook(["ops@example.com", "boss@example.com"])
    hook(RAISED)
    assert smtp_server.logins == [[b"", b"alerts@example.com", b"App-Passw0rd"]]
    message = email.message_from_string(smtp_server.messages[0])
    assert message["Subject"].replace("\n ", " ") == MESSAGE
    assert message["To"] == "ops@example.com, boss@example.com" and message["From"] == "alerts@example.com"
    assert '"compliance": 0.5' in message.get_payload() and not message.is_multipart()
    assert "App-Passw0rd" not in hook.name + repr(hook)
    logging.getLogger("test").warning("the password is %s", "App-Passw0rd")  # registered as a secret
    assert "App-Passw0rd" not in caplog.text


def test_email_carries_the_snapshot_as_an_attachment(smtp_server):
    EmailHook(["ops@example.com"], f"smtp://127.0.0.1:{smtp_server.server_address[1]}")(RAISED, JPEG)
    message = email.message_from_string(smtp_server.messages[0], policy=email.policy.default)
    assert message.get_content_type() == "multipart/mixed"
    (body, picture) = list(message.iter_parts())
    assert body.get_content_type() == "text/plain" and MESSAGE in body.get_content()
    assert (picture.get_content_type(), picture.get_filename()) == ("image/jpeg", "alert-1-frame-300.jpg")
    assert picture.get_content() == JPEG


def test_a_newline_in_the_video_name_cannot_break_or_inject_a_header(smtp_server, server):
    """The name reaches the subject as one line; no Bcc header, no extra recipient; the JSON body keeps the
    name as it is (escaped); chat messages and ntfy headers are one line too."""
    source = "door\r\nBcc: spy@example.com\nX-Evil: 1\x1b[31m"
    event = {**RAISED, "source": source}
    EmailHook(["ops@example.com"], f"smtp://127.0.0.1:{smtp_server.server_address[1]}")(event, JPEG)
    message = email.message_from_string(smtp_server.messages[0], policy=email.policy.default)
    assert message["Subject"] == MESSAGE.replace("door", "door Bcc: spy@example.com X-Evil: 1 [31m")
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert smtp_server.recipients == ["<ops@example.com>"]
    assert json.loads(message.get_body(("plain",)).get_content().split("\n\n", 1)[1])["source"] == source
    UrlHook(url_of(server, "/topic"), shape="ntfy")(event, JPEG)
    UrlHook(url_of(server, "/services/a/b/c"), shape="slack")(event)
    assert "\n" not in server.received[0]["headers"]["Message"] and "\n" not in server.received[1]["json"]["text"]


@pytest.mark.parametrize("address", ["ops@example.com\nBcc: spy@example.com", "a@b.com, c@d.com", "nobody", ""])
def test_recipients_are_one_address_each(address):
    with pytest.raises(ConfigError, match="--alert-email") as info:
        EmailHook([address], "smtp://127.0.0.1:25")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("url", [
    "smtp://bot:Pa55-s3cret@mail.example.com:abc", "smtp://bot:Pa55-s3cret@mail.example.com:99999",
    "smtp://bot:Pa55-s3cret@mail.example.com:0", "smtp:/bot:Pa55-s3cret@mail.example.com:587",
    "smtp//bot:Pa55-s3cret@mail.example.com", "http://bot:Pa55-s3cret@mail.example.com",
    "smtp://bot:Pa55-s3cret@[::1:587",
])
def test_a_bad_smtp_url_is_one_line_without_the_password(url, monkeypatch):
    monkeypatch.setenv(SMTP_ENV, url)
    with pytest.raises(ConfigError, match=SMTP_ENV) as info:  # the CLI prints a ConfigError as its one line
        EmailHook(["ops@example.com"])
    assert "\n" not in str(info.value) and "s3cret" not in str(info.value) and info.value.__cause__ is None
    if url.endswith(("abc", "99999", ":0")):
        assert "port" in str(info.value)


def test_email_hook_failures_and_bad_settings(monkeypatch):
    monkeypatch.delenv(SMTP_ENV, raising=False)
    with pytest.raises(ConfigError, match=SMTP_ENV):
        EmailHook(["ops@example.com"])
    with pytest.raises(ConfigError, match="smtp://"):
        EmailHook(["ops@example.com"], "http://mail.example.com")
    with pytest.raises(HookError, match="ConnectionRefusedError"):
        EmailHook(["ops@example.com"], f"smtp://127.0.0.1:{free_port()}", timeout_s=2)(RAISED)


# -- runner: one queue, worker and deadline per hook --------------------------------------------------------
class SlowHook:
    name = "slow"
    takes_snapshot = False

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, []

    def __call__(self, event):
        time.sleep(self.seconds)
        self.calls.append(event)


class GateHook:
    """Blocks in each call until `gate` is set; `entered` tells when the first call started."""

    takes_snapshot = True

    def __init__(self, name: str = "gate") -> None:
        self.name, self.gate, self.entered, self.calls = name, threading.Event(), threading.Event(), []

    def __call__(self, event, snapshot_jpeg=None):
        self.entered.set()
        self.gate.wait(10)
        self.calls.append((event, snapshot_jpeg))


class BrokenHook:
    name = "broken"

    def __call__(self, event):
        raise RuntimeError("bug in a hook")


def test_runner_never_blocks_and_delivers_in_order_on_close():
    slow = SlowHook(0.2)
    runner = HookRunner([slow])
    started = time.perf_counter()
    for i in range(3):
        runner.submit({"event": "alert_raised", "alert_id": i})
    assert time.perf_counter() - started < 0.1
    assert runner.close(wait_s=10) == {"delivered": 3, "failed": 0, "dropped": 0,
                                       "per_hook": [{"hook": "slow", "delivered": 3, "failed": 0, "dropped": 0}]}
    assert [e["alert_id"] for e in slow.calls] == [0, 1, 2]


def test_a_webhook_past_its_deadline_never_delays_the_command_or_the_email(server, smtp_server, tmp_path, caplog):
    """The webhook's server answers nothing (it sleeps) and the hook's deadline is 1 s: each event costs it 1 s.
    The command and the e-mail get all three events long before the webhook reaches its third, and the summary
    counts the webhook's three failures."""
    server.hang = threading.Event()
    log = tmp_path / "command.log"
    webhook = UrlHook(url_of(server, "/services/T/B/slowSecret"), timeout_s=1.0, shape="slack")
    command = CommandHook(["sh", "-c", 'cat >> "$0"; echo >> "$0"', str(log)], timeout_s=5)
    mail = EmailHook(["ops@example.com"], f"smtp://127.0.0.1:{smtp_server.server_address[1]}", timeout_s=5)
    runner = HookRunner([webhook, command, mail])
    with caplog.at_level(logging.WARNING, logger="maskdetect.monitor.hooks"):
        started = time.monotonic()
        for i in range(3):
            runner.submit({**RAISED, "alert_id": i})
        assert wait_for(lambda: len(smtp_server.messages) == 3 and log.exists()
                        and log.read_text().count("\n") == 3, 10)
        assert len(server.arrived) < 3  # the webhook is still on its first or second event
        assert time.monotonic() - started < 2.0
        counts = runner.close(wait_s=10)
    assert counts == {"delivered": 6, "failed": 3, "dropped": 0, "per_hook": [
        {"hook": "POST http://127.0.0.1:{}/services/***/***/*** (slack)".format(server.server_address[1]),
         "delivered": 0, "failed": 3, "dropped": 0},
        {"hook": "command 'sh'", "delivered": 3, "failed": 0, "dropped": 0},
        {"hook": f"e-mail to ops@example.com via 127.0.0.1:{smtp_server.server_address[1]}", "delivered": 3,
         "failed": 0, "dropped": 0}]}
    assert caplog.text.count("timed out after 1 s") == 3 and "slowSecret" not in caplog.text
    assert [json.loads(line)["alert_id"] for line in log.read_text().splitlines()] == [0, 1, 2]


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """An HTTP server that answers one byte every 0.2 s: each wait is within any socket timeout, the whole
    answer takes a minute."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with listener:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    conn.recv(65536)
                    for byte in b"HTTP/1.1 200 OK\r\n" * 20:
                        if stop.wait(0.2):
                            break
                        try:
                            conn.sendall(bytes([byte]))
                        except OSError:
                            break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/x"
    stop.set()
    thread.join(5)


def test_a_server_trickling_its_answer_is_cut_at_the_hooks_deadline(trickling_server, caplog):
    hook = UrlHook(trickling_server, timeout_s=0.5)
    runner = HookRunner([hook])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="maskdetect.monitor.hooks"):
        runner.submit(EVENT)
        counts = runner.close(wait_s=20)
    assert time.monotonic() - started < 1.5 + 1.5  # its deadline: 0.5 s + 1 s of grace
    assert counts["per_hook"] == [{"hook": hook.name, "delivered": 0, "failed": 1, "dropped": 0}]
    assert "passed its deadline of 1.5 s" in caplog.text


def test_drops_are_counted_per_hook_when_its_queue_is_full(caplog):
    """A blocked hook with room for 2 waiting events: of 5, one is in its hands, 2 wait, 2 are dropped; a quick
    hook beside it gets all 5. Each gets the snapshot only if it takes one."""
    blocked, quick = GateHook(), SlowHook(0.0)
    runner = HookRunner([blocked, quick], max_pending=2)
    assert runner.wants_snapshot
    with caplog.at_level(logging.WARNING, logger="maskdetect.monitor.hooks"):
        runner.submit({"alert_id": 0}, snapshot_jpeg=JPEG)
        assert blocked.entered.wait(5)
        for i in range(1, 5):
            runner.submit({"alert_id": i})
            assert wait_for(lambda: len(quick.calls) == i + 1, 5)  # the quick one keeps up
        assert runner.counts()["per_hook"][0] == {"hook": "gate", "delivered": 0, "failed": 0, "dropped": 2}
        blocked.gate.set()
        counts = runner.close(wait_s=10)
    assert counts == {"delivered": 8, "failed": 0, "dropped": 2, "per_hook": [
        {"hook": "gate", "delivered": 3, "failed": 0, "dropped": 2},
        {"hook": "slow", "delivered": 5, "failed": 0, "dropped": 0}]}
    assert [(e["alert_id"], s) for e, s in blocked.calls] == [(0, JPEG), (1, None), (2, None)]
    assert caplog.text.count("alert hook gate is behind: dropped") == 1  # once, not per event


def test_events_still_waiting_when_the_run_ends_are_counted_dropped():
    blocked = GateHook()
    runner = HookRunner([blocked])
    for i in range(3):
        runner.submit({"alert_id": i})
    assert blocked.entered.wait(5)
    started = time.perf_counter()
    counts = runner.close(wait_s=0.2)
    assert time.perf_counter() - started < 1.5
    assert counts["per_hook"] == [{"hook": "gate", "delivered": 0, "failed": 0, "dropped": 3}]
    blocked.gate.set()  # the call in progress ends after the summary: it changes nothing
    time.sleep(0.1)
    assert runner.counts() == counts
    runner.submit(EVENT)  # after close: ignored, no error
    assert runner.counts() == counts


def test_runner_logs_failures_and_goes_on(server, caplog):
    server.status = 500
    refused = UrlHook(f"http://127.0.0.1:{free_port()}/x?token=s3cret", timeout_s=2)
    failing_command = CommandHook(python_command("import sys; sys.exit(1)"))
    good = SlowHook(0.0)
    runner = HookRunner([UrlHook(url_of(server, "/x?token=s3cret")), refused, failing_command, BrokenHook(), good])
    with caplog.at_level(logging.WARNING, logger="maskdetect.monitor.hooks"):
        runner.submit(EVENT)
        counts = runner.close(wait_s=20)
    assert {k: counts[k] for k in ("delivered", "failed", "dropped")} == {"delivered": 1, "failed": 4, "dropped": 0}
    assert [h["failed"] for h in counts["per_hook"]] == [1, 1, 1, 1, 0]
    assert good.calls == [EVENT]
    assert caplog.text.count("alert hook") == 4
    assert "s3cret" not in caplog.text + json.dumps(counts) and "token=***" in caplog.text


def test_max_pending_must_be_at_least_one():
    with pytest.raises(ConfigError, match="max_pending"):
        HookRunner([], max_pending=0)


# -- secrets in every output --------------------------------------------------------------------------------
def test_no_webhook_url_or_smtp_password_in_any_output(tmp_path, server, smtp_server, monkeypatch, caplog, capsys):
    """Plant a webhook key and an SMTP password, run the monitor with hooks that succeed and hooks that fail
    (HTTP 500, connection refused, SMTP refused, a login to a server that answers nothing), with every logger at
    DEBUG; grep the logs, stdout/stderr, exceptions, the hooks' names and every file written."""
    import argparse

    from maskdetect.cli.predict import add_monitor_arguments, monitor_from_args
    from test_monitor import run_clip, start

    key, password = "Zq9WebhookKey77", "Smtp-Pa55word-x"
    server.status = 500
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    monkeypatch.setenv(SMTP_ENV, f"smtp://bot%40example.com:{password}@127.0.0.1:{smtp_server.server_address[1]}")
    outputs = []
    with caplog.at_level(logging.DEBUG):
        args = add_monitor_arguments(argparse.ArgumentParser()).parse_args(
            ["--track", "--alert-seconds", "1", "--alert-cooldown", "0", "--alert-format", "discord",
             "--alert-url", url_of(server, f"/api/webhooks/123/{key}?wait={key}"), "--alert-email", "ops@example.com"])
        monitor = start(monitor_from_args(args), tmp_path / "clip.mp4")
        run_clip(monitor)
        summary = monitor.close()
        assert summary["alerts"]["hooks"]["failed"] >= 1 and summary["alerts"]["hooks"]["delivered"] >= 1
        failing = [UrlHook(f"http://u:{key}@127.0.0.1:{free_port()}/api/webhooks/1/{key}", timeout_s=2),
                   EmailHook(["ops@example.com"], f"smtp://bot:{password}@127.0.0.1:{free_port()}", timeout_s=2)]
        for hook in failing:
            with pytest.raises(HookError) as info:
                hook(RAISED, JPEG)
            outputs += [str(info.value), repr(info.value), hook.name, repr(hook)]
        for bad in (f"smtp://bot:{password}@host:port", f"smtp:/bot:{password}@host"):
            with pytest.raises(ConfigError) as info:
                EmailHook(["ops@example.com"], bad)
            outputs.append(str(info.value))
    assert server.received and smtp_server.logins == [[b"", b"bot@example.com", password.encode()]]
    captured = capsys.readouterr()
    outputs += [caplog.text, captured.out, captured.err, json.dumps(summary)]
    outputs += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    for text in outputs:
        assert key not in text and password not in text, text


# -- snapshot -----------------------------------------------------------------------------------------------
def test_pixelated_faces_keep_nothing_but_a_few_blocks():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)
    out = pixelate_faces(frame, [[30, 20, 70, 80]], margin=0.0)
    face = out[20:80, 30:70].reshape(-1, 3)
    assert len(np.unique(face, axis=0)) <= PRIVACY_BLOCKS ** 2
    outside = np.ones(frame.shape[:2], bool)
    outside[20:80, 30:70] = False
    assert np.array_equal(out[outside], frame[outside]) and not np.array_equal(out, frame)


def test_alert_snapshot_is_a_small_jpeg_of_the_frame():
    import cv2

    frame = np.zeros((720, 1920, 3), np.uint8)
    frame[:, :960] = (255, 0, 0)  # red on the left, in RGB
    jpeg = alert_snapshot(frame, max_side=640)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 640, 3)
    assert tuple(image[120, 100]) == pytest.approx((0, 0, 255), abs=8)  # BGR: colour order kept
    with pytest.raises(ValueError, match="RGB uint8"):
        alert_snapshot(np.zeros((4, 4), np.float32))


def test_the_monitor_sends_the_frame_that_raised_the_alert_to_hooks_that_take_it(tmp_path):
    import cv2

    from maskdetect.monitor.monitor import Monitor, MonitorSettings
    from test_monitor import FPS, clip_frame, start

    takes, plain = GateHook("takes"), SlowHook(0.0)
    takes.gate.set()
    settings = MonitorSettings(smoothing_window=1, alert_seconds=1.0, alert_cooldown_s=0)
    monitor = start(Monitor(settings, hooks=[takes, plain]), tmp_path / "clip.mp4")
    frame = np.zeros((160, 360, 3), np.uint8)
    for i in range(60):
        frame[:] = i  # each frame its own grey
        monitor.update(clip_frame(i), i, i / FPS, frame=frame)
    monitor.close()
    (raised, jpeg), (cleared, none) = takes.calls
    assert (raised["event"], cleared["event"], none) == ("alert_raised", "alert_cleared", None)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (160, 360, 3) and abs(int(image[5, 5, 0]) - raised["frame_index"]) <= 2
    assert [e["event"] for e in plain.calls] == ["alert_raised", "alert_cleared"]


def test_a_run_that_asks_for_privacy_sends_a_snapshot_with_the_faces_pixelated(tmp_path):
    import cv2

    from maskdetect.monitor.monitor import Monitor, MonitorSettings
    from test_monitor import FPS, clip_frame, start

    takes = GateHook("takes")
    takes.gate.set()
    settings = MonitorSettings(smoothing_window=1, alert_seconds=1.0, alert_cooldown_s=0, snapshot_blur_faces=True)
    monitor = start(Monitor(settings, hooks=[takes]), tmp_path / "clip.mp4")
    frame = np.random.default_rng(0).integers(0, 255, (160, 360, 3), dtype=np.uint8)  # detail everywhere
    for i in range(60):
        monitor.update(clip_frame(i), i, i / FPS, frame=frame)
    monitor.close()
    (raised, jpeg), _ = takes.calls
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)
    x1, y1, x2, y2 = (int(v) for v in clip_frame(raised["frame_index"]).xyxy[1])  # the unmasked face
    face, background = image[y1 + 2:y2 - 2, x1 + 2:x2 - 2], image[5:35, 5:35]
    assert np.abs(np.diff(face, axis=1)).mean() < 0.3 * np.abs(np.diff(background, axis=1)).mean()


def test_snapshot_docstring_example_runs():
    import doctest

    import maskdetect.monitor.snapshot as snapshot

    result = doctest.testmod(snapshot)
    assert result.failed == 0 and result.attempted > 0


def test_cli_options_make_the_chat_and_email_hooks(tmp_path, monkeypatch):
    from maskdetect.cli import build_parser
    from maskdetect.cli.predict import monitor_from_args

    monkeypatch.setenv(SMTP_ENV, "smtps://bot:Pa55word-x@mail.example.com")
    args = build_parser().parse_args(["predict", "--model", "m", "--source", "0", "--alert-url",
                                      "https://hooks.slack.com/services/T/B/secretpart", "--alert-format", "slack",
                                      "--alert-email", "ops@example.com", "--alert-email", "it@example.com"])
    monitor = monitor_from_args(args)
    url, mail = monitor.hooks.hooks
    assert isinstance(url, UrlHook) and url.shape == "slack" and "secretpart" in url.url
    assert isinstance(mail, EmailHook) and mail.to == ["ops@example.com", "it@example.com"] and mail.tls
    assert mail.port == 465 and mail.sender == "maskdetect@" + socket.gethostname()
