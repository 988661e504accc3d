"""Alert hooks: a command, a loopback HTTP server, failing hooks, redaction, and never blocking the caller."""

from __future__ import annotations

import base64
import email
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from maskdetect.errors import ConfigError
from maskdetect.monitor.hooks import (EVENT_ENV, SMTP_ENV, CommandHook, EmailHook, HookError, HookRunner, UrlHook,
                                     alert_message)

EVENT = {"event": "alert_raised", "alert_id": 1, "frame_index": 10, "timestamp_s": 1.0, "compliance": 0.5}


# -- command hook -------------------------------------------------------------------------------------------
def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


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
    (python_command("import sys; sys.stderr.write('boom'); sys.exit(3)"), "exited with status 3: boom"),
    (python_command("import time; time.sleep(10)"), "timed out after 0.5 s"),
    (["/nonexistent/maskdetect-hook"], "could not start"),
])
def test_failing_command_hooks_raise_hook_error(command, message):
    with pytest.raises(HookError, match=message):
        CommandHook(command, timeout_s=0.5)(EVENT)


def test_empty_command_is_a_config_error():
    with pytest.raises(ConfigError):
        CommandHook("   ")


# -- URL hook against a loopback server ---------------------------------------------------------------------
class Recorder(BaseHTTPRequestHandler):
    received: list[dict] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        kind = self.headers["Content-Type"] or ""
        self.server.received.append({"path": self.path, "type": kind,
                                     "json": json.loads(body) if "json" in kind else body.decode(),
                                     "title": self.headers["Title"]})
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.received, httpd.status = [], 200
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def url_of(httpd: ThreadingHTTPServer, path: str = "/alert") -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}{path}"


def test_url_hook_posts_json(server):
    UrlHook(url_of(server, "/alert?token=s3cret"))(EVENT)
    assert server.received == [{"path": "/alert?token=s3cret", "type": "application/json", "json": EVENT,
                                "title": None}]


RAISED = {"event": "alert_raised", "alert_id": 1, "frame_index": 300, "timestamp_s": 10.0, "compliance": 0.5,
          "people_in_view": 4, "run_start_s": 8.0, "threshold": 0.75, "source": "door"}
MESSAGE = "maskdetect alert on door: 50% of 4 people wear a mask correctly (below 75%) at 10.0 s"


@pytest.mark.parametrize(("shape", "body"), [
    ("slack", {"text": MESSAGE}), ("teams", {"text": MESSAGE}), ("discord", {"content": MESSAGE}), ("ntfy", MESSAGE),
])
def test_url_hook_speaks_the_chat_webhooks_shape(server, shape, body):
    hook = UrlHook(url_of(server, "/services/T000/B000/XXXX"), shape=shape)
    hook(RAISED)
    assert server.received[0]["json"] == body
    assert (server.received[0]["title"] == "maskdetect") == (shape == "ntfy")
    assert alert_message({**RAISED, "event": "alert_cleared", "compliance": 0.9}) == (
        "maskdetect on door: alert cleared, 90% wear a mask correctly at 10.0 s")
    with pytest.raises(ConfigError, match="alert-format"):
        UrlHook(url_of(server), shape="irc")


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
    server.messages, server.logins = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_email_hook_sends_through_the_server_in_the_environment(smtp_server, monkeypatch, caplog):
    port = smtp_server.server_address[1]
    monkeypatch.setenv(SMTP_ENV, f"smtp://alerts%40example.com:App-Passw0rd@127.0.0.1:{port}")
    hook = EmailHook(["ops@example.com", "boss@example.com"])
    hook(RAISED)
    assert smtp_server.logins == [[b"", b"alerts@example.com", b"App-Passw0rd"]]
    message = email.message_from_string(smtp_server.messages[0])
    assert message["Subject"].replace("\n ", " ") == MESSAGE
    assert message["To"] == "ops@example.com, boss@example.com" and message["From"] == "alerts@example.com"
    assert '"compliance": 0.5' in message.get_payload()
    assert "App-Passw0rd" not in hook.name
    logging.getLogger("test").warning("the password is %s", "App-Passw0rd")  # registered as a secret
    assert "App-Passw0rd" not in caplog.text


def test_email_hook_failures_and_bad_settings(monkeypatch):
    monkeypatch.delenv(SMTP_ENV, raising=False)
    with pytest.raises(ConfigError, match=SMTP_ENV):
        EmailHook(["ops@example.com"])
    with pytest.raises(ConfigError, match="smtp://"):
        EmailHook(["ops@example.com"], "http://mail.example.com")
    with pytest.raises(HookError, match="ConnectionRefusedError"):
        EmailHook(["ops@example.com"], f"smtp://127.0.0.1:{free_port()}", timeout_s=2)(RAISED)


def test_url_hook_http_error_is_a_hook_error_without_the_secret(server):
    server.status = 500
    with pytest.raises(HookError, match="HTTP 500") as info:
        UrlHook(url_of(server, "/alert?token=s3cret"))(EVENT)
    assert "s3cret" not in str(info.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_url_hook_connection_refused_is_a_hook_error_without_the_secret():
    with pytest.raises(HookError, match="ConnectionError") as info:
        UrlHook(f"http://user:pw-s3cret@127.0.0.1:{free_port()}/a?token=s3cret", timeout_s=2)(EVENT)
    assert "s3cret" not in str(info.value)


def test_url_hook_rejects_other_schemes():
    with pytest.raises(ConfigError):
        UrlHook("file:///etc/passwd")


# -- runner -------------------------------------------------------------------------------------------------
class SlowHook:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, []

    def __call__(self, event):
        time.sleep(self.seconds)
        self.calls.append(event)


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
    assert runner.close(wait_s=10) == {"delivered": 3, "failed": 0, "dropped": 0}
    assert [e["alert_id"] for e in slow.calls] == [0, 1, 2]


def test_runner_logs_failures_and_goes_on(server, caplog):
    server.status = 500
    refused = UrlHook(f"http://127.0.0.1:{free_port()}/x?token=s3cret", timeout_s=2)
    failing_command = CommandHook(python_command("import sys; sys.exit(1)"))
    good = SlowHook(0.0)
    runner = HookRunner([UrlHook(url_of(server, "/x?token=s3cret")), refused, failing_command, BrokenHook(), good])
    with caplog.at_level(logging.WARNING, logger="maskdetect.monitor.hooks"):
        runner.submit(EVENT)
        stats = runner.close(wait_s=20)
    assert stats == {"delivered": 1, "failed": 4, "dropped": 0}
    assert good.calls == [EVENT]
    assert caplog.text.count("alert hook") == 4
    assert "s3cret" not in caplog.text and "token=***" in caplog.text


def test_runner_drops_events_beyond_max_pending(caplog):
    slow = SlowHook(0.3)
    runner = HookRunner([slow], max_pending=1)
    with caplog.at_level(logging.WARNING, logger="maskdetect.monitor.hooks"):
        for i in range(4):
            runner.submit({"event": "alert_raised", "alert_id": i})
        stats = runner.close(wait_s=10)
    assert stats["dropped"] >= 1 and stats["delivered"] + stats["dropped"] == 4
    assert "dropped" in caplog.text


def test_close_does_not_wait_forever():
    runner = HookRunner([SlowHook(2.0)])
    runner.submit(EVENT)
    started = time.perf_counter()
    runner.close(wait_s=0.2)
    assert time.perf_counter() - started < 1.5
    runner.submit(EVENT)  # after close: ignored, no error


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
