"""maskdetect.site.dashboard: the token rules on a real aiohttp server, and the dashboard of a real watch of two
loopback ffmpeg cameras in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from maskdetect.errors import ConfigError
from maskdetect.site.camera import CameraState
from maskdetect.site.dashboard import Dashboard, is_loopback, parse_bind, resolve_token

from site_streams import MASKED, UNMASKED, StandinStream, free_port, make_clip

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_bind_and_token_rules(monkeypatch):
    assert parse_bind("8080") == ("127.0.0.1", 8080) and parse_bind("0.0.0.0:81") == ("0.0.0.0", 81)
    assert parse_bind("[::1]:9") == ("::1", 9) and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.raises(ConfigError, match="HOST"):
        parse_bind("host:port")
    monkeypatch.delenv("MASKDETECT_DASHBOARD_TOKEN", raising=False)
    assert resolve_token("127.0.0.1") == (None, False)
    token, generated = resolve_token("0.0.0.0")
    assert generated and len(token) >= 24
    from maskdetect.redact import redact

    assert token not in redact(f"token {token}")  # never logged
    monkeypatch.setenv("MASKDETECT_DASHBOARD_TOKEN", "from-the-environment-1")
    assert resolve_token("127.0.0.1") == ("from-the-environment-1", False)  # set: required even on loopback
    with pytest.raises(ConfigError, match="needs a token"):
        Dashboard([], ".", host="0.0.0.0", token=None)


def test_every_page_and_api_call_is_refused_without_the_token(tmp_path):
    state = CameraState("door", ("left",))
    state.jpeg = b"\xff\xd8jpeg"
    (tmp_path / "door" / "alerts").mkdir(parents=True)
    (tmp_path / "door" / "alerts" / "a.jpg").write_bytes(b"\xff\xd8snap")
    runner = SimpleNamespace(camera=SimpleNamespace(name="door"), state=state, camera_dir=tmp_path / "door")
    token = "t0ken-for-this-test-only"
    server = Dashboard([runner], tmp_path, host="0.0.0.0", port=0, token=token).start()
    base = f"http://127.0.0.1:{server.port}"
    paths = ["/", "/camera/door", "/static/dashboard.js", "/api/cameras", "/api/cameras/door",
             "/api/cameras/door/frame.jpg", "/api/cameras/door/alerts/a.jpg"]
    try:
        for path in paths:
            assert _get(base + path)[0] == 401, path
            assert _get(base + path, {"Authorization": "Bearer wrong-token-xxxx"})[0] == 401, path
            assert _get(base + path, {"Authorization": f"Bearer {token}"})[0] == 200, path
        status, body, headers = _get(f"{base}/?token={token}")
        assert status == 200 and "maskdetect_token=" in headers.get("Set-Cookie", "") and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        status, body, _ = _get(f"{base}/api/cameras", {"Cookie": cookie})
        cameras = json.loads(body)["cameras"]
        assert status == 200 and cameras[0]["name"] == "door" and "source" not in cameras[0]
        assert _get(f"{base}/api/cameras/nope", {"Cookie": cookie})[0] == 404
        assert _get(f"{base}/api/cameras/door/alerts/..%2Fx.jpg", {"Cookie": cookie})[0] == 404
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_dashboard_in_a_real_browser(tmp_path, monkeypatch):
    """Two stand-in cameras: each tile's frame counter advances, an alert with its snapshot appears on the
    unmasked one, and without the token the page and the API are refused. Writes docs/dashboard.png when
    MASKDETECT_SCREENSHOT=1 (about 60 s on the busy 2-core machine)."""
    from playwright.sync_api import sync_playwright

    from maskdetect.infer.predictor import Predictor
    from maskdetect.site.config import load_site
    from maskdetect.site.watch import watch

    token = "browser-test-token-123"
    monkeypatch.setenv("MASKDETECT_DASHBOARD_TOKEN", token)
    door = StandinStream(make_clip(tmp_path / "unmasked.mp4", UNMASKED, seconds=3)).start()
    hall = StandinStream(make_clip(tmp_path / "masked.mp4", MASKED, seconds=3)).start()
    site = tmp_path / "site.yaml"
    site.write_text(f"""
defaults: {{alert_seconds: 0.5, alert_cooldown: 0, alert_threshold: 0.75}}
cameras:
  - name: door
    source: {door.url}
    zones: [{{name: doorway, polygon: [[0, 0], [160, 0], [160, 240], [0, 240]]}}]
  - name: hall
    source: {hall.url}
""")
    port = free_port()
    outcome: dict[str, object] = {}

    def browse(handle):
        try:
            base = f"http://127.0.0.1:{port}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-sync"])
                page = browser.new_page(viewport={"width": 1280, "height": 820})
                page.goto(f"{base}/?token={token}", wait_until="domcontentloaded")
                counters = {}
                for name in ("door", "hall"):
                    frames = page.locator(f'section[data-camera="{name}"] .frames')
                    page.wait_for_function(f'document.querySelector(\'section[data-camera="{name}"] .frames\')'
                                           f'?.textContent > 0', timeout=90_000)
                    counters[name] = [int(frames.text_content())]
                for name in ("door", "hall"):
                    page.wait_for_function(f'document.querySelector(\'section[data-camera="{name}"] .frames\')'
                                           f'.textContent > {counters[name][0]}', timeout=60_000)
                    counters[name].append(int(page.locator(f'section[data-camera="{name}"] .frames').text_content()))
                snapshot = page.locator('section[data-camera="door"] .alert-event img.snapshot').first
                snapshot.wait_for(timeout=90_000)
                page.wait_for_function('(() => { const i = document.querySelector(\'section[data-camera="door"] '
                                       '.alert-event img.snapshot\'); return i && i.complete && i.naturalWidth > 0 })()',
                                       timeout=30_000)
                outcome["alert_text"] = page.locator('section[data-camera="door"] .alerts').text_content()
                outcome["hall_alerts"] = page.locator('section[data-camera="hall"] .alert-event').count()
                outcome["live_view"] = page.evaluate('document.querySelector(\'section[data-camera="door"] img.view\')'
                                                     '.naturalWidth')
                time.sleep(1.5)  # let the chart and views settle for the picture
                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot))
                if os.environ.get("MASKDETECT_SCREENSHOT") == "1":
                    shutil.copy(shot, REPO / "docs" / "dashboard.png")
                outcome["counters"] = counters
                stranger = browser.new_context().new_page()  # no token, no cookie
                outcome["page_refused"] = stranger.goto(f"{base}/", wait_until="domcontentloaded").status
                outcome["api_refused"] = stranger.request.get(f"{base}/api/cameras").status
                outcome["camera_refused"] = stranger.goto(f"{base}/camera/door").status
                browser.close()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            handle.stop()

    predictor = Predictor(None)
    try:
        watch(load_site(site), tmp_path / "out", predictor=predictor, dashboard=f"0.0.0.0:{port}", record=False,
              duration_s=240, on_ready=lambda handle: threading.Thread(target=browse, args=(handle,), daemon=True).start())
    finally:
        door.stop()
        hall.stop()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    counters = outcome["counters"]
    assert all(after > before > 0 for before, after in counters.values()), counters
    assert "raised" in outcome["alert_text"] and outcome["hall_alerts"] == 0
    assert outcome["live_view"] > 0  # the MJPEG view shows frames
    assert (outcome["page_refused"], outcome["api_refused"], outcome["camera_refused"]) == (401, 401, 401)
    events = [json.loads(line) for line in (tmp_path / "out" / "door" / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "alert_raised" and list((tmp_path / "out" / "door" / "alerts").glob("*.jpg"))
