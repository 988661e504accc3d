"""An RTSP stand-in camera: GStreamer's RTSP server (Debian's ``gir1.2-gst-rtsp-server-1.0``) plays an H.264 MP4
clip to every reader, at its real rate, with basic authentication, over RTP on TCP or UDP as the reader asks.

Run by the system Python, which has PyGObject (``python3-gi``); the project's venv does not::

    RTSP_STANDIN_PASSWORD=... /usr/bin/python3 tests/rtsp_standin.py CLIP PORT /PATH USER

(the password comes from the environment, so that it is not on a command line). It prints ``ready`` once it listens on 127.0.0.1:PORT and serves until killed. Each reader gets the clip from its
start (a fresh pipeline per connection), as a camera gives whoever connects its current picture.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def serve(clip: str, port: int, path: str, user: str, password: str) -> None:
    """Serve `clip` at ``rtsp://USER:PASSWORD@127.0.0.1:PORT/PATH`` until the process is killed."""
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    factory = GstRtspServer.RTSPMediaFactory()
    location = clip.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 '
                       "config-interval=1 )")
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
    permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    factory.set_permissions(permissions)
    server.get_mount_points().add_factory(path, factory)
    if not server.attach(None):
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    import os

    clip_arg, port_arg, path_arg, user_arg = sys.argv[1:5]
    serve(clip_arg, int(port_arg), path_arg, user_arg, os.environ["RTSP_STANDIN_PASSWORD"])
