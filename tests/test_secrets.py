"""Secrets never leak: a corpus of real-world secret URL shapes (Slack, Discord and Teams webhooks, RTSP with
odd passwords, signed S3/GCS/Azure links, OAuth and Roboflow keys) goes through every way we show a URL — text
and URL redaction, log records of our loggers and of urllib3/requests/absl, the errors of downloads, hooks,
ffmpeg and OpenCV, the CLI's error line, and the monitor's output files — and none of the secrets may come out.
"""

from __future__ import annotations

import argparse
import http.server
import logging
import socket
import threading
from contextlib import contextmanager

import pytest

from data_fixtures import serve
from maskdetect.errors import MaskdetectError
from maskdetect.redact import redact, redact_url, register_url_secrets, split_userinfo

SLACK = ("/services/T0ABCDEF1/B0GHIJKL2/aBcDeFgHiJkLmNoPqRsTuVwX", ["T0ABCDEF1", "B0GHIJKL2",
                                                                   "aBcDeFgHiJkLmNoPqRsTuVwX"])
DISCORD = ("/api/webhooks/123456789012345678/AbCdEf-GhIjKlMnOpQrStUvWxYz_0123456789abcdefGHIJKLmnopqr",
           ["123456789012345678", "AbCdEf-GhIjKlMnOpQrStUvWxYz_0123456789abcdefGHIJKLmnopqr"])
TEAMS = ("/webhookb2/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0@72f988bf-86f1-41af-91ab-2d7cd011db47/IncomingWebhook/"
         "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d/3f2e1d0c-9b8a-7f6e-5d4c-3b2a1f0e9d8c",
         ["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
          "3f2e1d0c-9b8a-7f6e-5d4c-3b2a1f0e9d8c"])
WEBHOOK_PATHS = [SLACK, DISCORD, TEAMS]
WEBHOOKS = [("https://hooks.slack.com" + SLACK[0], SLACK[1]),
            ("https://discord.com" + DISCORD[0], DISCORD[1]),
            ("https://contoso.webhook.office.com" + TEAMS[0], TEAMS[1]),
            ("https://hooks.example.com/alert?room=ops&signing_key=Zx9Yw8Vu7Ts6", ["Zx9Yw8Vu7Ts6"])]
# (userinfo, secrets): passwords with "@", ":", "/", "!", and percent-encoded ones
RTSP_USERINFO = [("admin:se@cret!pass", ["se@cret!pass", "cret!pass"]),
                 ("admin:p:a/ss@w0rd", ["p:a/ss@w0rd", "a/ss@w0rd", "ss@w0rd"]),
                 ("viewer:p%40ss%2Fw0rd", ["p%40ss%2Fw0rd", "p@ss/w0rd"]),
                 ("op:hunter2", ["hunter2"])]
RTSP = [(f"rtsp://{info}@192.168.1.64:554/Streaming/Channels/101", secrets) for info, secrets in RTSP_USERINFO]
SIGNED = [
    ("https://bucket.s3.amazonaws.com/data.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
     "%2F20261129%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261129T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders"
     "=host&X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
     ["AKIAIOSFODNN7EXAMPLE", "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"]),
    ("https://storage.googleapis.com/b/o.zip?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%40proj.iam."
     "gserviceaccount.com%2F20261129&X-Goog-Signature=0a1b2c3d4e5f60718293a4b5c6d7e8f9",
     ["0a1b2c3d4e5f60718293a4b5c6d7e8f9", "svc%40proj.iam"]),
    ("https://acct.blob.core.windows.net/c/d.zip?sv=2022-11-02&se=2026-12-01&sr=b&sp=r&sig=AbCdEfGh1234%2BIjKl%3D",
     ["AbCdEfGh1234"]),
    ("https://public.roboflow.com/ds/AbCdEf123?key=ZyXwVu987654", ["ZyXwVu987654"]),
    ("https://auth.example.com/cb?client_id=app&client_secret=s3cr3tV4lue99&refresh_token=rT0k3nAbc",
     ["s3cr3tV4lue99", "rT0k3nAbc"]),
]
CORPUS = WEBHOOKS + RTSP + SIGNED


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


@pytest.mark.parametrize("url,secrets", CORPUS)
def test_text_and_url_redaction(url, secrets):
    webhook = (url, secrets) in WEBHOOKS
    for text in (f"could not open {url}: 401", f"'{url}'", f"GET {url} HTTP/1.1", f"url={url}"):
        assert not leaks(redact(text), secrets) or webhook, redact(text)  # webhooks: only once registered
    assert not leaks(redact_url(url, webhook=webhook), secrets), redact_url(url, webhook=webhook)


@pytest.mark.parametrize("url,secrets", CORPUS)
def test_log_records_of_any_logger_once_the_url_is_registered(url, secrets, caplog):
    register_url_secrets(url, webhook=(url, secrets) in WEBHOOKS)
    path = url.split("://", 1)[1].split("@")[-1] if url.startswith("rtsp") else url.split("/", 3)[3]
    with caplog.at_level(logging.DEBUG):
        for name in ("maskdetect.x", "urllib3.connectionpool", "requests", "absl", "roboflow", ""):
            logging.getLogger(name).debug('%s "POST /%s HTTP/1.1" 500', url, path)
            logging.getLogger(name).warning("failed: " + url)  # pre-formatted too
    assert caplog.records and not leaks(caplog.text, secrets), caplog.text


@pytest.mark.parametrize("info,secrets", RTSP_USERINFO)
def test_userinfo_is_split_at_the_last_at_sign(info, secrets):
    assert split_userinfo(f"{info}@cam.local:554/live?x=1") == (info, "cam.local:554/live?x=1")


def test_an_at_sign_in_a_webhook_path_is_not_user_info():
    assert split_userinfo("contoso.webhook.office.com" + TEAMS[0]) == (None, "contoso.webhook.office.com" + TEAMS[0])


@contextmanager
def post_server(status: int):
    """A loopback server answering every POST with `status`; yields (base URL, received bodies)."""
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("path,secrets", WEBHOOK_PATHS)
def test_webhook_hooks_logs_errors_and_monitor_outputs(tmp_path, caplog, path, secrets):
    """A real POST per alert to a loopback server with the webhook's path shape, urllib3 at DEBUG, a failing
    hook, and every file the monitor writes."""
    from maskdetect.monitor.hooks import HookError, UrlHook
    from maskdetect.cli.predict import add_monitor_arguments, monitor_from_args
    from test_monitor import run_clip, start

    logging.getLogger("urllib3").setLevel(logging.DEBUG)  # as loud as it gets: the filter alone must hold
    with caplog.at_level(logging.DEBUG), post_server(500) as (base, received):
        url = base + path
        args = add_monitor_arguments(argparse.ArgumentParser()).parse_args(
            ["--track", "--alert-seconds", "1", "--alert-cooldown", "0", "--alert-url", url])
        monitor = start(monitor_from_args(args), tmp_path / "clip.mp4")
        run_clip(monitor)
        summary = monitor.close()
        assert received and summary["alerts"]["hooks"]["failed"] >= 1  # the hook really ran, and failed
        errors = []
        for target in (url, f"http://127.0.0.1:{closed_port()}{path}"):
            with pytest.raises(HookError) as info:
                UrlHook(target, timeout_s=5)({"event": "test"})
            errors.append(str(info.value))
    assert "urllib3" in caplog.text  # its request lines were logged, redacted
    texts = [caplog.text, *errors, repr(UrlHook(url)), UrlHook(url).name]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png"]
    for text in texts:
        assert not leaks(text, secrets), text
    assert any(p.suffix == ".jsonl" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("url,secrets", SIGNED)
def test_download_errors_and_logs(tmp_path, caplog, capsys, url, secrets):
    from maskdetect.download import download

    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    path_and_query = url.split("/", 3)[3]
    with caplog.at_level(logging.DEBUG), serve({}) as srv:  # every request is a 404
        with pytest.raises(MaskdetectError) as info:
            download(srv.url("/" + path_and_query), tmp_path / "x.zip")
    with pytest.raises(MaskdetectError) as offline:
        download(f"http://127.0.0.1:{closed_port()}/{path_and_query}", tmp_path / "y.zip")
    captured = capsys.readouterr()
    for text in (str(info.value), str(offline.value), caplog.text, captured.out, captured.err,
                 *[p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]):
        assert not leaks(text, secrets), text


@pytest.mark.parametrize("info,secrets", RTSP_USERINFO)
def test_ffmpeg_and_opencv_errors_and_the_cli_error_line(info, secrets):
    """ffmpeg prints the URL it could not open; OpenCV fails to open it; the CLI prints the error line."""
    from maskdetect.infer.sources import LatestFrameCapture
    from maskdetect.infer.video import VideoReader

    url = f"rtsp://{info}@127.0.0.1:{closed_port()}/live"
    with pytest.raises(MaskdetectError) as ffmpeg_error:
        list(VideoReader(url, size_wh=(64, 48)))
    with pytest.raises(MaskdetectError) as opencv_error:
        LatestFrameCapture(url).start()
    from conftest import run_cli

    result = run_cli("-v", "predict", "--model", "no-such-export", "--source", url, "--json", "o.json",
                     timeout=120)
    assert result.returncode != 0
    for text in (str(ffmpeg_error.value), str(opencv_error.value), result.stdout, result.stderr):
        assert not leaks(text, secrets), text


def test_the_cli_quiets_third_party_loggers_even_with_verbose(tmp_path):
    from maskdetect.cli import main
    from maskdetect.redact import THIRD_PARTY_LOGGERS

    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    assert main(["-v", "data", "inspect", str(tmp_path / "none")]) == 2
    assert all(logging.getLogger(n).getEffectiveLevel() == logging.WARNING for n in THIRD_PARTY_LOGGERS)
