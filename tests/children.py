"""Child processes as a terminal starts them."""

from __future__ import annotations

import signal


def default_signals() -> None:
    """In the child (``preexec_fn``): SIGINT and SIGHUP as a terminal's foreground command has them (a suite
    started with ``nohup ... &`` passes them on ignored, and maskdetect keeps an ignored signal ignored)."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
