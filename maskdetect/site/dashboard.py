"""The live web dashboard of ``maskdetect watch --dashboard [HOST:]PORT``.

Served by aiohttp in a thread of the watch process, beside the camera threads: one small dependency that is
both the HTTP server and its streaming (an MJPEG response is a coroutine writing parts), with no ASGI stack
(FastAPI + uvicorn would add Starlette, Pydantic and a second process model for the same few routes).

Pages (static files shipped as package data in ``maskdetect/site/static/``):

* ``/`` — a tile per camera: the live annotated view, status, frames, people in view and per zone, compliance
  now, the last hour's chart, and the latest alerts with their snapshots;
* ``/camera/<name>`` — one camera, larger, with every alert kept.

JSON API (what the pages use): ``/api/cameras``, ``/api/cameras/<name>`` (with the last hour's ``history``),
``/api/cameras/<name>/frame.jpg``, ``/api/cameras/<name>/stream.mjpg`` and
``/api/cameras/<name>/alerts/<file>.jpg`` (snapshots).

Access: it binds to 127.0.0.1 unless told otherwise. On any other address, or whenever a token is set
(``$MASKDETECT_DASHBOARD_TOKEN``, or one generated and printed once), every page and API call needs the token:
``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once (which sets a cookie for the pages' own requests).
Without it the answer is 401. Camera sources (which may hold passwords) are never served.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Sequence

from maskdetect.errors import ConfigError
from maskdetect.redact import register_secret

logger = logging.getLogger(__name__)

TOKEN_ENV = "MASKDETECT_DASHBOARD_TOKEN"
COOKIE = "maskdetect_token"
STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_HOST = "127.0.0.1"


def parse_bind(text: str) -> tuple[str, int]:
    """``"8080"`` -> ``("127.0.0.1", 8080)``; ``"0.0.0.0:8080"``, ``"[::]:8080"`` -> that host and port."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--dashboard {text!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"--dashboard {text!r}: port must be 0-65535")
    return host or DEFAULT_HOST, number


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None = None) -> tuple[str | None, bool]:
    """The token the dashboard requires, and whether it was generated here (to be printed once): `token`, else
    ``$MASKDETECT_DASHBOARD_TOKEN``, else a new random one if `host` is not a loopback address, else None (no
    token on 127.0.0.1). Registered as a secret, so no log line shows it."""
    token = token or os.environ.get(TOKEN_ENV) or None
    generated = token is None and not is_loopback(host)
    if generated:
        token = secrets.token_urlsafe(24)
    if token is not None:
        if len(token) < 12:
            raise ConfigError(f"the dashboard token (${TOKEN_ENV}) must be at least 12 characters")
        register_secret(token)
    return token, generated


class Dashboard:
    """The dashboard server over the cameras of a running watch.

    Args:
        runners: the cameras (:class:`~maskdetect.site.camera.CameraRunner`: their ``state`` and folder).
        out_dir: the site's folder (snapshots are served from ``<camera>/alerts/``).
        host, port: where to listen (port 0: any free port; see :attr:`url`).
        token: required on every request when set (see :func:`resolve_token`); token_generated: it was made
            here (the CLI prints it once).

    Example:
        >>> server = Dashboard(runners, out, port=8080).start(); print(server.url)   # doctest: +SKIP
    """

    def __init__(self, runners: Sequence[Any], out_dir: str | Path, *, host: str = DEFAULT_HOST, port: int = 8080,
                 token: str | None = None, token_generated: bool = False) -> None:
        if token is None and not is_loopback(host):
            raise ConfigError(f"the dashboard on {host} needs a token: every page would be open to the network")
        self.runners = {r.camera.name: r for r in runners}
        self.out_dir, self.host, self.port, self.token = Path(out_dir), host, port, token
        self.token_generated = token_generated
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing = False
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}/"

    # -- the server's thread ------------------------------------------------------------------------------------
    def start(self) -> "Dashboard":
        self._thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise ConfigError(f"the dashboard cannot listen on {self.host}:{self.port}: {self._error}")
        logger.info("dashboard on %s%s", self.url, " (token required)" if self.token else "")
        return self

    def _serve(self) -> None:
        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app(), access_log=None)
        try:
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=1.0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1] if self.port == 0 else self.port  # type: ignore
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    def stop(self) -> None:
        """Stop serving (open streams end)."""
        self._closing = True
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- the app ------------------------------------------------------------------------------------------------
    def _app(self) -> Any:
        from aiohttp import web

        app = web.Application(middlewares=[self._auth])
        app.add_routes([
            web.get("/", self._page("index.html")),
            web.get("/camera/{name}", self._camera_page),
            web.get("/static/{file}", self._static),
            web.get("/api/cameras", self._cameras),
            web.get("/api/cameras/{name}", self._camera),
            web.get("/api/cameras/{name}/frame.jpg", self._frame),
            web.get("/api/cameras/{name}/stream.mjpg", self._stream),
            web.get("/api/cameras/{name}/alerts/{file}", self._snapshot),
        ])
        return app

    def _authorized(self, request: Any) -> tuple[bool, bool]:
        """(allowed, came in the query: set the cookie)."""
        if self.token is None:
            return True, False
        offered = [request.headers.get("Authorization", "").removeprefix("Bearer ").strip(),
                   request.cookies.get(COOKIE, ""), request.query.get("token", "")]
        ok = [bool(t) and hmac.compare_digest(t.encode(), self.token.encode()) for t in offered]
        return any(ok), ok[2] and not ok[1]

    @property
    def _auth(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def auth(request: Any, handler: Any) -> Any:
            allowed, set_cookie = self._authorized(request)
            if not allowed:
                return web.Response(status=401, text="401: this dashboard needs its token (Authorization: Bearer "
                                    "TOKEN, or ?token=TOKEN in the address)", headers={"WWW-Authenticate": "Bearer"})
            response = await handler(request)
            if set_cookie and isinstance(response, web.Response):
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
            return response

        return auth

    def _runner(self, request: Any) -> Any:
        from aiohttp import web

        runner = self.runners.get(request.match_info["name"])
        if runner is None:
            raise web.HTTPNotFound(text=f"no camera {request.match_info['name']!r}")
        return runner

    def _page(self, name: str) -> Any:
        from aiohttp import web

        async def page(request: Any) -> Any:
            return web.Response(text=(STATIC / name).read_text(encoding="utf-8"), content_type="text/html",
                                headers={"Cache-Control": "no-store"})

        return page

    async def _camera_page(self, request: Any) -> Any:
        self._runner(request)
        return await self._page("camera.html")(request)

    async def _static(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info["file"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def _cameras(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"cameras": [r.state.to_dict() for r in self.runners.values()]})

    async def _camera(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self._runner(request).state.to_dict(history=True))

    async def _frame(self, request: Any) -> Any:
        from aiohttp import web

        jpeg = self._runner(request).state.jpeg
        if jpeg is None:
            raise web.HTTPNotFound(text="no frame yet")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _stream(self, request: Any) -> Any:
        from aiohttp import web

        state = self._runner(request).state
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        sent = None
        try:
            while not self._closing:
                jpeg = state.jpeg
                if jpeg is not None and jpeg is not sent:
                    await response.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                    sent = jpeg
                await asyncio.sleep(0.05)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def _snapshot(self, request: Any) -> Any:
        from aiohttp import web

        runner = self._runner(request)
        name = request.match_info["file"]
        path = runner.camera_dir / "alerts" / name
        if "/" in name or name.startswith(".") or not name.endswith(".jpg") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)
